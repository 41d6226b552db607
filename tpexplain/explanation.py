"""An `Explanation`: one person's pose and every layer's attention, recorded in one forward pass,
with the maps the TransPose paper reads from it (dependency = attention row, affected area = column)."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch

from . import figures
from .keypoints import COCO_KEYPOINTS, KeypointSet, keypoint_index, keypoint_set
from .layout import TokenLayout
from .record import LayerAttention
from .transforms import Crop, apply_affine, denormalize

MAP_KINDS = ("dependency", "affected")


@dataclass
class AttentionMap(figures.Displayable):
    """One attention row or column on the token grid, with what is needed to draw it."""

    values: np.ndarray              # (gh, gw) over visual tokens
    kind: str                       # "dependency" | "affected"
    layer: int                      # 0-based
    head: int | None                # None: mean over heads
    query_crop: tuple[float, float]  # query point in crop pixels
    keypoint: str | None
    explanation: "Explanation" = field(repr=False)
    special: np.ndarray | None = None  # values over special tokens (TokenPose's keypoint tokens)

    def on_crop(self) -> np.ndarray:
        """Bilinearly upsampled to the model input crop (as the official visualisation does)."""
        h, w = self.explanation.input_size
        lay = self.explanation.layout
        gh, gw = self.values.shape
        size = (int(round(gw * lay.stride[1])), int(round(gh * lay.stride[0])))
        up = cv2.resize(self.values.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        if lay.origin == (0.0, 0.0) and up.shape == (h, w):
            return up
        shift = np.float32([[1, 0, lay.origin[0]], [0, 1, lay.origin[1]]])  # the grid's first token's corner
        return cv2.warpAffine(up, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def on_image(self) -> np.ndarray:
        """Mapped back through the crop's affine transform onto the original image (0 outside the crop)."""
        ih, iw = self.explanation.image.shape[:2]
        return cv2.warpAffine(self.on_crop(), self.explanation.crop.from_crop, (iw, ih),
                              flags=cv2.INTER_LINEAR, borderValue=0.0)

    @property
    def title(self) -> str:
        head = "mean of heads" if self.head is None else f"head {self.head}"
        what = self.keypoint or f"({self.query_crop[0]:.0f},{self.query_crop[1]:.0f})"
        return f"{what} · layer {self.layer + 1} · {self.kind} · {head}"

    def plot(self, ax=None, where: str = "crop", colorbar: bool = True, title: str | None = None):
        """Draw the overlay on `ax` (a new figure if None); `where` is 'crop' or 'image'."""
        if ax is None:
            _, ax = plt.subplots(figsize=(3.2, 4))
        ex = self.explanation
        if where == "image":
            qx, qy = apply_affine(np.array(self.query_crop), ex.crop.from_crop)
            figures.overlay(ax, ex.image, self.on_image(), (qx, qy), colorbar=colorbar,
                            title=self.title if title is None else title)
        else:
            figures.overlay(ax, ex.crop_image, self.on_crop(), self.query_crop, colorbar=colorbar,
                            title=self.title if title is None else title)
        return ax

    def figure(self, where: str = "crop"):
        """Two panels: the predicted pose and this map."""
        fig, axes = plt.subplots(1, 2, figsize=(6.4, 4))
        ex = self.explanation
        if where == "image":
            figures.pose_panel(axes[0], ex.image, ex.keypoints, keypoints_set=ex.keypoint_set)
        else:
            figures.pose_panel(axes[0], ex.crop_image, ex.keypoints_crop_scored, keypoints_set=ex.keypoint_set)
        self.plot(axes[1], where=where)
        return fig



@dataclass
class Explanation(figures.Displayable):
    """A person's prediction plus the attention of every encoder layer, for one image."""

    image: np.ndarray                 # original RGB image
    crop: Crop
    input: torch.Tensor               # (3, H, W) normalised model input
    heatmaps: torch.Tensor            # (K, h, w)
    keypoints: np.ndarray             # (K, 3) image pixels + score
    keypoints_crop: np.ndarray        # (K, 2) crop pixels
    attention: list[LayerAttention]   # one per encoder layer, batch of one
    layout: TokenLayout
    model_name: str = "model"
    keypoint_names: tuple[str, ...] = COCO_KEYPOINTS

    @property
    def keypoint_set(self) -> KeypointSet:
        """The model's keypoints (names, mirror pairs, skeleton, body parts)."""
        return keypoint_set(self.keypoint_names)

    @property
    def num_layers(self) -> int:
        return len(self.attention)

    @property
    def num_heads(self) -> int:
        return self.attention[0].shape[1]

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.input.shape[-2:])

    @property
    def crop_image(self) -> np.ndarray:
        return denormalize(self.input)

    @property
    def keypoints_crop_scored(self) -> np.ndarray:
        return np.concatenate([self.keypoints_crop, self.keypoints[:, 2:]], axis=1)

    def keypoint(self, name: str | int) -> int:
        return keypoint_index(name, self.keypoint_names)

    def layer_index(self, layer: int) -> int:
        n = self.num_layers
        if not -n <= layer < n:
            raise ValueError(f"layer {layer} out of range: the model has {n} encoder layers (0..{n - 1}, or -1)")
        return layer % n

    def query(self, keypoint: str | int | None = None, point: tuple[float, float] | None = None
              ) -> tuple[int, tuple[float, float], str | None]:
        """(token index, crop point, keypoint name) of a keypoint's prediction or of a crop point."""
        if (keypoint is None) == (point is None):
            raise ValueError("give exactly one of keypoint or point")
        if point is not None:
            x, y = float(point[0]), float(point[1])
            return self.layout.token_at(x, y), (x, y), None
        k = self.keypoint(keypoint)
        x, y = (float(v) for v in self.keypoints_crop[k])
        special = self.layout.special
        if special and self.keypoint_names[k] in special:   # TokenPose: the keypoint token itself
            return special.index(self.keypoint_names[k]), (x, y), self.keypoint_names[k]
        return self.layout.token_at(x, y), (x, y), self.keypoint_names[k]

    def _vector(self, kind: str, token: int, layer: int, head: int | None) -> torch.Tensor:
        att = self.attention[self.layer_index(layer)]
        if kind == "dependency":
            v = att.rows([token])[0, :, 0]          # (H, N)
        elif kind == "affected":
            v = att.columns([token])[0, :, :, 0]
        else:
            raise ValueError(f"unknown map kind '{kind}'; use dependency or affected")
        if head is None:
            return v.mean(0)
        if not 0 <= head < v.shape[0]:
            raise ValueError(f"head {head} out of range: layer has {v.shape[0]} heads")
        return v[head]

    def attention_map(self, kind: str, keypoint: str | int | None = None, layer: int = -1,
                      head: int | None = None, point: tuple[float, float] | None = None) -> AttentionMap:
        token, xy, name = self.query(keypoint, point)
        v = self._vector(kind, token, layer, head).float().numpy()
        ns = len(self.layout.special)
        return AttentionMap(v[ns:].reshape(self.layout.grid), kind, self.layer_index(layer), head, xy, name, self,
                            special=v[:ns] if ns else None)

    def dependency(self, keypoint: str | int | None = None, layer: int = -1, head: int | None = None,
                   point: tuple[float, float] | None = None) -> AttentionMap:
        """Where the prediction at `keypoint` (or crop `point`) looks: its attention row."""
        return self.attention_map("dependency", keypoint, layer, head, point)

    def affected(self, keypoint: str | int | None = None, layer: int = -1, head: int | None = None,
                 point: tuple[float, float] | None = None) -> AttentionMap:
        """Which positions the token under `keypoint` influences: its attention column."""
        return self.attention_map("affected", keypoint, layer, head, point)

    def keypoint_attention(self, layer: int = -1, head: int | None = None):
        """TokenPose: how the keypoint tokens attend to each other at `layer` (a K x K `KeypointAttention`)."""
        from .keypoint_attention import keypoint_attention
        return keypoint_attention(self, layer, head)

    def grid(self, keypoints: list[str | int] | None = None, layers: list[int] | None = None,
             kind: str = "dependency", head: int | None = None, where: str = "crop"):
        """The official figure: a row per layer, a column per keypoint, the pose first. With one keypoint
        or one layer, the panels form a single sequence after the pose (wrapped every 6)."""
        keypoints = list(self.keypoint_names) if keypoints is None else keypoints
        layers = list(range(self.num_layers)) if layers is None else [self.layer_index(i) for i in layers]
        background = self.image if where == "image" else self.crop_image
        pose = self.keypoints if where == "image" else self.keypoints_crop_scored
        if len(keypoints) == 1 or len(layers) == 1:
            rows = [[(kp, layer) for layer in layers for kp in keypoints]]
            cols = min(6, len(rows[0]) + 1)
            nrows = -(-(len(rows[0]) + 1) // cols)
        else:
            rows = [[(kp, layer) for kp in keypoints] for layer in layers]
            cols, nrows = len(keypoints) + 1, len(layers)
        fig, axes = plt.subplots(nrows, cols, figsize=(2.4 * cols, 3.2 * nrows), squeeze=False)
        cells = list(axes.flat)
        if len(rows) == 1:   # one sequence: the pose, then every panel
            slots = [(cells[0], None)] + [(cells[i + 1], p) for i, p in enumerate(rows[0])]
        else:                # a row per layer, each starting with the pose
            slots = [(axes[r][c], p) for r, row in enumerate(rows) for c, p in enumerate([None] + row)]
        for ax, panel in slots:
            if panel is None:
                figures.pose_panel(ax, background, pose, title=self.model_name, keypoints_set=self.keypoint_set)
                continue
            m = self.attention_map(kind, panel[0], panel[1], head)
            m.plot(ax, where=where, colorbar=True, title=f"{m.keypoint} · L{panel[1] + 1}")
        for ax in cells[len(slots):]:
            ax.set_axis_off()
        fig.suptitle(f"{kind} maps ({'mean of heads' if head is None else f'head {head}'})", fontsize=10)
        return fig

    def layers(self, keypoint: str | int, kind: str = "dependency", head: int | None = None):
        """The keypoint's map at every layer, side by side."""
        return self.grid([keypoint], None, kind, head)

    def figure(self, where: str = "image"):
        fig, ax = plt.subplots(figsize=(4, 5))
        background = self.image if where == "image" else self.crop_image
        figures.pose_panel(ax, background, self.keypoints if where == "image" else self.keypoints_crop_scored,
                           title=self.model_name, keypoints_set=self.keypoint_set)
        return fig

