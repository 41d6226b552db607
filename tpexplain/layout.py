"""How a model lays out its tokens: the one thing an analysis needs to know about a model family."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenLayout:
    """`special` tokens (e.g. TokenPose's keypoint tokens) come first, then a row-major `grid` of visual
    tokens, each covering `stride` (sy, sx) pixels of the input crop, the first one starting at crop pixel
    `origin` (x, y) (e.g. (-2, -2) for ViTPose, whose patch convolution pads by 2)."""

    grid: tuple[int, int]
    stride: tuple[float, float]
    special: tuple[str, ...] = ()
    origin: tuple[float, float] = (0.0, 0.0)

    @property
    def num_visual(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_tokens(self) -> int:
        return len(self.special) + self.num_visual

    def token_at(self, x: float, y: float) -> int:
        """Index of the visual token under crop pixel (x, y), clamped to the grid (official: truncation)."""
        col = min(max(int((x - self.origin[0]) // self.stride[1]), 0), self.grid[1] - 1)
        row = min(max(int((y - self.origin[1]) // self.stride[0]), 0), self.grid[0] - 1)
        return len(self.special) + row * self.grid[1] + col

    def token_center(self, index: int) -> tuple[float, float]:
        """Crop-pixel centre (x, y) of a visual token."""
        i = index - len(self.special)
        row, col = divmod(i, self.grid[1])
        return ((col + 0.5) * self.stride[1] + self.origin[0], (row + 0.5) * self.stride[0] + self.origin[1])
