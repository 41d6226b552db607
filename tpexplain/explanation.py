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
QUERIES = ("official", "geometric")


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
    token: int | None = None          # the queried token (index into special + visual tokens)
    query: str = "geometric"          # how the token was chosen: "official" | "geometric" | "point"
    at: str = "pred"                  # the keypoint's predicted ("pred") or ground-truth ("gt") position

    @property
    def token_cell(self) -> tuple[int, int] | None:
        """(row, column) of the queried visual token on the grid; None for a special token."""
        return self.explanation.token_cell(self.token)

    @property
    def token_label(self) -> str:
        """The queried token as text: 'token r12 c9 (crop 100,76)', or 'keypoint token'."""
        cell = self.token_cell
        if cell is None:
            return "keypoint token" if self.token is not None else ""
        x, y = self.explanation.layout.token_center(self.token)
        return f"token r{cell[0]} c{cell[1]} (crop {x:.0f},{y:.0f})"

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
        token = f"\n{self.token_label}, {self.query} query" if self.token_cell is not None and self.keypoint else ""
        return f"{what} · layer {self.layer + 1} · {self.kind} · {head}{token}"

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
    keypoints_heatmap: np.ndarray | None = None   # (K, 2) decoded heatmap pixels (None: derived from the crop)
    query_convention: str = "official"            # default of `query` below: "official" | "geometric"
    # "image" (file name), "person" ("annotation 183126", "detection 1 of 3", "--bbox", "whole image"),
    # "model" (zoo name): set by callers after explaining, used in figure titles
    meta: dict = field(default_factory=dict)
    ground_truth: np.ndarray | None = None        # (K, 3) x, y, v in original image pixels (COCO; v=0 unlabelled)

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

    def query(self, keypoint: str | int | None = None, point: tuple[float, float] | None = None,
              query: str | None = None, at: str = "pred") -> tuple[int, tuple[float, float], str | None]:
        """(token index, crop point, keypoint name) of a keypoint's prediction (or ground truth) or of a crop point.

        A keypoint's visual token follows `query` (default `self.query_convention`):
        "official" is TransPose's visualisation (visualize.py with its demo notebook): the heatmap-space
        prediction x_hm goes to the input crop as 4·x_hm + 0.5 and to the token int(that / stride), rows
        from y the same way; "geometric" is the token under the keypoint's crop position (the prediction
        mapped through the image with the crop's affine). Both are clamped to the grid. `at="gt"` applies
        the same rule to the ground-truth joint (`ground_truth`, mapped through the crop transform). A crop
        `point` always takes the token under it; TokenPose's keypoints query their own keypoint token.
        """
        if (keypoint is None) == (point is None):
            raise ValueError("give exactly one of keypoint or point")
        if at not in ("pred", "gt"):
            raise ValueError(f"unknown at '{at}'; use pred or gt")
        if point is not None:
            x, y = float(point[0]), float(point[1])
            return self.layout.token_at(x, y), (x, y), None
        k = self.keypoint(keypoint)
        name = self.keypoint_names[k]
        if at == "gt":
            gt = self.ground_truth_joint(k)
            x, y = (float(v) for v in apply_affine(gt, self.crop.to_crop))
            hx, hy = (float(v) for v in apply_affine(gt, self.crop.to_heatmap))
        else:
            x, y = (float(v) for v in self.keypoints_crop[k])
            hx, hy = self._heatmap_point(k)
        special = self.layout.special
        if special and name in special:   # TokenPose: the keypoint token itself
            return special.index(name), (x, y), name
        query = self.query_convention if query is None else query
        if query == "geometric":
            return self.layout.token_at(x, y), (x, y), name
        if query != "official":
            raise ValueError(f"unknown query '{query}'; use {' or '.join(QUERIES)}")
        return self._official_token_at(hx, hy), (x, y), name

    def ground_truth_joint(self, keypoint: str | int) -> np.ndarray:
        """The labelled ground-truth position (x, y) of a keypoint in image pixels; ValueError if none."""
        k = self.keypoint(keypoint)
        if self.ground_truth is None:
            raise ValueError("no ground truth for this person (give annotations, e.g. --coco ANN, or use --at pred)")
        gt = np.asarray(self.ground_truth, dtype=np.float64)
        if gt.shape[0] != len(self.keypoint_names) or gt[k, 2] <= 0:
            raise ValueError(f"{self.keypoint_names[k]} is not labelled in the ground truth (use --at pred)")
        return gt[k, :2]

    def official_token(self, k: int) -> int:
        """The token TransPose's visualisation queries for keypoint `k` (see `query`)."""
        return self._official_token_at(*self._heatmap_point(k))

    def _official_token_at(self, hx: float, hy: float) -> int:
        h, w = self.input_size
        ratio = h / self.heatmaps.shape[-2]          # 4: the official code's fixed input/heatmap factor
        gh, gw = self.layout.grid
        down = h // gh                               # official: input height // grid height, for x and y
        col = min(max(int((ratio * hx + 0.5) / down), 0), gw - 1)
        row = min(max(int((ratio * hy + 0.5) / down), 0), gh - 1)
        return len(self.layout.special) + row * gw + col

    def _heatmap_point(self, k: int) -> tuple[float, float]:
        if self.keypoints_heatmap is not None:
            return tuple(float(v) for v in self.keypoints_heatmap[k])
        image = apply_affine(self.keypoints_crop[k], self.crop.from_crop)
        return tuple(float(v) for v in apply_affine(image, self.crop.to_heatmap))

    def token_cell(self, token: int | None) -> tuple[int, int] | None:
        """(row, column) of a visual token; None for a special token (or None)."""
        ns = len(self.layout.special)
        if token is None or token < ns:
            return None
        return divmod(token - ns, self.layout.grid[1])

    def query_info(self, keypoint: str | int, query: str | None = None, at: str = "pred") -> dict:
        """Which token a keypoint's maps query, for JSON outputs: convention, token index, grid row and
        column, the token's centre and the keypoint, in crop pixels (with `"at": "gt"` for ground truth)."""
        token, (x, y), name = self.query(keypoint, query=query, at=at)
        cell = self.token_cell(token)
        extra = {"at": "gt"} if at == "gt" else {}
        if cell is None:
            return {"keypoint": name, "query": "keypoint token", "token": token, "keypoint_crop": [x, y], **extra}
        cx, cy = self.layout.token_center(token)
        return {"keypoint": name, "query": self.query_convention if query is None else query, "token": token,
                "row": cell[0], "col": cell[1], "token_center_crop": [cx, cy], "keypoint_crop": [x, y], **extra}

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
                      head: int | None = None, point: tuple[float, float] | None = None,
                      query: str | None = None, at: str = "pred") -> AttentionMap:
        """A keypoint's (or crop point's) attention row or column; `query` and `at` ("pred" | "gt") as in `query`."""
        token, xy, name = self.query(keypoint, point, query, at)
        v = self._vector(kind, token, layer, head).float().numpy()
        ns = len(self.layout.special)
        how = "point" if point is not None else self.query_convention if query is None else query
        return AttentionMap(v[ns:].reshape(self.layout.grid), kind, self.layer_index(layer), head, xy, name, self,
                            special=v[:ns] if ns else None, token=token, query=how, at=at)

    def dependency(self, keypoint: str | int | None = None, layer: int = -1, head: int | None = None,
                   point: tuple[float, float] | None = None, query: str | None = None,
                   at: str = "pred") -> AttentionMap:
        """Where the prediction at `keypoint` (or crop `point`) looks: its attention row."""
        return self.attention_map("dependency", keypoint, layer, head, point, query, at)

    def affected(self, keypoint: str | int | None = None, layer: int = -1, head: int | None = None,
                 point: tuple[float, float] | None = None, query: str | None = None,
                 at: str = "pred") -> AttentionMap:
        """Which positions the token under `keypoint` influences: its attention column."""
        return self.attention_map("affected", keypoint, layer, head, point, query, at)

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
            cell = m.token_cell
            tok = f" · r{cell[0]}c{cell[1]}" if cell is not None else ""
            m.plot(ax, where=where, colorbar=True, title=f"{m.keypoint} · L{panel[1] + 1}{tok}")
        for ax in cells[len(slots):]:
            ax.set_axis_off()
        query = "" if self.layout.special else f"; rNcM: the queried token, {self.query_convention} convention"
        fig.suptitle(f"{kind} maps ({'mean of heads' if head is None else f'head {head}'}{query})", fontsize=10)
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

