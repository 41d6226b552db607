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
    def uniform(self) -> float:
        """The value every token would get from a uniform attention row: 1/N over all N tokens."""
        return 1.0 / self.explanation.layout.num_tokens

    @property
    def title(self) -> str:
        head = "mean of heads" if self.head is None else f"head {self.head}"
        what = self.keypoint or f"({self.query_crop[0]:.0f},{self.query_crop[1]:.0f})"
        if self.keypoint and self.at == "gt":
            what += " (ground truth)"
        token = f"\n{self.token_label}, {self.query} query" if self.token_cell is not None and self.keypoint else ""
        return f"{what} · layer {self.layer + 1}\n{self.kind} · {head}{token}"

    def plot(self, ax=None, where: str = "crop", colorbar: bool = True, title: str | None = None,
             vmin: float | None = None, vmax: float | None = None, zoom: bool = False, marker_size: float = 140,
             colorbar_ticks: int | None = None):
        """Draw the overlay on `ax` (a new figure if None); `where` is 'crop' or 'image' (with `zoom`, only
        the part of the image the model's crop covers). The colour limits default to the map's own range;
        the colour bar marks the uniform level 1/N. On the image, pixels outside the crop are left clear.
        Returns the colour mapping (a `ScalarMappable`: its `norm` holds the limits)."""
        if ax is None:
            _, ax = plt.subplots(figsize=(3.2, 4))
        ex = self.explanation
        title = self.title if title is None else title
        if where == "image":
            query = apply_affine(np.array(self.query_crop), ex.crop.from_crop)
            values = np.where(ex.crop_mask(), self.on_image(), np.nan)
            background, offset = ex.image, (0, 0)
            if zoom:
                x0, y0, x1, y1 = ex.crop_window()
                background, values, offset = background[y0:y1, x0:x1], values[y0:y1, x0:x1], (x0, y0)
            im = figures.overlay(ax, background, values, tuple(query), colorbar=False, title=title, vmin=vmin,
                                 vmax=vmax, marker_size=marker_size, offset=offset)
        else:
            im = figures.overlay(ax, ex.crop_image, self.on_crop(), self.query_crop, colorbar=False, title=title,
                                 vmin=vmin, vmax=vmax, marker_size=marker_size)
        self._mark_other(ax, where, marker_size / 4)
        if colorbar:
            figures.add_colorbar(im, ax, self.uniform, ticks=colorbar_ticks)
        return im

    def _other(self) -> tuple[np.ndarray, str] | None:
        """The keypoint's other position in crop pixels and its marker: the ground truth (a square) when the
        query is the prediction, the prediction (a circle) when it is the ground truth; None if unknown."""
        ex = self.explanation
        if self.keypoint is None or ex.ground_truth is None:
            return None
        k = ex.keypoint(self.keypoint)
        if self.at == "gt":
            return np.asarray(ex.keypoints_crop[k], np.float64), "o"
        if ex.ground_truth[k, 2] > 0:
            return apply_affine(ex.ground_truth[k, :2], ex.crop.to_crop), "s"
        return None

    def _mark_other(self, ax, where: str, size: float = 35) -> None:
        other = self._other()
        if other is None:
            return
        xy, marker = other
        if where == "image":
            xy = apply_affine(xy, self.explanation.crop.from_crop)
        ax.scatter([xy[0]], [xy[1]], marker=marker, s=size, facecolors="white" if marker == "s" else "none",
                   edgecolors="black", linewidths=0.7, zorder=4)

    def tile(self, where: str = "crop", norm=None, title: str | None = None, colorbar: bool = True) -> figures.Tile:
        """This map as a mosaic tile (`figures.mosaic`): blended over the crop, or over the image window the
        crop covers; `norm` the colour limits (default: the map's own range)."""
        ex, (x0, y0) = self.explanation, (0, 0)
        if where == "image":
            x0, y0, x1, y1 = ex.crop_window()
            values = np.where(ex.crop_mask(), self.on_image(), np.nan)[y0:y1, x0:x1]
            background = ex.image[y0:y1, x0:x1]
        else:
            values, background = self.on_crop(), ex.crop_image

        def place(p):
            p = np.asarray(p, np.float64)
            return apply_affine(p, ex.crop.from_crop) - [x0, y0] if where == "image" else p
        norm = norm or figures.make_norm(float(np.nanmin(values)), float(np.nanmax(values)))
        points = [(*place(self.query_crop), "*", 55, "white", "black")]
        other = self._other()
        if other is not None:
            points.append((*place(other[0]), other[1], 14, "white" if other[1] == "s" else "none", "black"))
        return figures.Tile(background, self.title if title is None else title, norm, uniform=self.uniform,
                            points=points, values=values, bar=colorbar)

    def figure(self, where: str = "crop", scale: str = "panel"):
        """Two panels: the predicted pose (with the ground truth, the person box on the image) and this map,
        under a title naming the image, person and model. `scale`: "panel" (the map's own range), "shared"
        (the same, for one map) or "absolute" (0..1)."""
        (lo, hi), ex = figures.limits([self.values], scale)[0], self.explanation
        fig, axes = _panels_figure(2, ex.image if where == "image" else ex.crop_image, top_in=0.85, bottom_in=0.6)
        ex.pose_panel(axes[0], where, legend=True)
        self.plot(axes[1], where=where, vmin=lo, vmax=hi)
        self.marker_legend(axes[1])
        fig.suptitle(ex.caption, fontsize=9)
        return fig

    def marker_legend(self, ax, **kwargs):
        """What the map's markers are (the queried position; the keypoint's other one), below `ax`."""
        return figures.marker_legend(ax, self.at if self.keypoint else None, (self._other() or ("", None))[1], **kwargs)


def _panels_figure(n: int, background: np.ndarray, width: float = 3.1, top_in: float = 0.9, bottom_in: float = 0.6):
    """A row of `n` panels sized to the background's aspect (no empty bands above and below a wide photo),
    with `top_in` inches for titles and `bottom_in` for a legend."""
    h, w = background.shape[:2]
    fig_w, left, right, wspace = n * width + 0.6, 0.02, 0.93, 0.12
    panel_w = (right - left) * fig_w / (n + (n - 1) * wspace)    # what each axes really gets
    fig_h = panel_w * h / w + top_in + bottom_in
    fig, axes = plt.subplots(1, n, figsize=(fig_w, fig_h), squeeze=False)
    fig.subplots_adjust(left=left, right=right, top=1 - top_in / fig_h, bottom=bottom_in / fig_h, wspace=wspace)
    for ax in axes[0]:
        ax.set_anchor("N")      # a panel narrowed by its colour bar gives up height below, not under the title
    return fig, list(axes[0])


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
    # image (file name), person ("annotation 183126", ...), model (zoo name), weights ("random", a file), box
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
        """The model's input crop as RGB uint8 (made once: figures draw it in many panels)."""
        if "_crop_image" not in self.__dict__:
            self.__dict__["_crop_image"] = denormalize(self.input)
        return self.__dict__["_crop_image"]

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

        A keypoint's visual token follows `query` (default `self.query_convention`): "official" is TransPose's
        visualisation (visualize.py): heatmap-space x_hm goes to the crop as 4·x_hm + 0.5 and to the token
        int(that / stride), rows from y alike; "geometric" is the token under the keypoint's crop position;
        both clamped to the grid. `at="gt"`: the same for the ground-truth joint. A crop `point` takes the
        token under it; TokenPose's keypoints query their own keypoint token."""
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

    # ------------------------------------------------------------------------------------------- figures

    @property
    def caption(self) -> str:
        """Who and what this is, for titles: 'image.jpg · annotation 183126 · model default' (from `meta`)."""
        return figures.caption(self.meta, self.model_name)

    def crop_outline(self) -> np.ndarray:
        """(4, 2) corners of the model's input crop in image pixels."""
        h, w = self.input_size
        return apply_affine(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64), self.crop.from_crop)

    def crop_window(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the image pixels around the model's crop, clipped to the image."""
        ih, iw = self.image.shape[:2]
        c = self.crop_outline()
        x0, y0 = np.floor(c.min(0)).astype(int)
        x1, y1 = np.ceil(c.max(0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, iw), min(y1, ih)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else (0, 0, iw, ih)

    def crop_mask(self) -> np.ndarray:
        """(H, W) bool: the image pixels the model's input crop covers."""
        if "_crop_mask" not in self.__dict__:     # one warp for the many panels of a figure
            ih, iw = self.image.shape[:2]
            ones = np.ones(self.input_size, np.float32)
            self.__dict__["_crop_mask"] = cv2.warpAffine(ones, self.crop.from_crop, (iw, ih),
                                                         flags=cv2.INTER_NEAREST, borderValue=0.0) > 0.5
        return self.__dict__["_crop_mask"]

    def ground_truth_at(self, where: str = "crop") -> np.ndarray | None:
        """The ground truth (K, 3: x, y, v) in crop or image pixels; None without one."""
        if self.ground_truth is None:
            return None
        gt = np.asarray(self.ground_truth, dtype=np.float64).copy()
        if where != "image":
            gt[:, :2] = apply_affine(gt[:, :2], self.crop.to_crop)
        return gt

    def pose_panel(self, ax, where: str = "crop", title: str | None = None, legend: bool = False) -> None:
        """The prediction over the crop or image, with the ground truth (dashed) when known; on the image
        also the person box (`meta["box"]`) and the model's crop (dotted)."""
        image = where == "image"
        gt = self.ground_truth_at(where)
        box = self.meta.get("box") if image else None
        default = "prediction" + (" and ground truth" if gt is not None else "")
        figures.pose_panel(ax, self.image if image else self.crop_image,
                           self.keypoints if image else self.keypoints_crop_scored,
                           title=default if title is None else title, keypoints_set=self.keypoint_set,
                           ground_truth=gt, box=box, outline=self.crop_outline() if image else None, legend=legend)

    def pose_tile(self, where: str = "crop", title: str | None = None) -> figures.Tile:
        """The prediction (with the ground truth; on the image the person box and crop) as a mosaic tile."""
        default = "prediction" + ("\n+ ground truth" if self.ground_truth is not None else "")
        title = default if title is None else title
        if where != "image":
            return figures.Tile(self.crop_image, title, skeleton=self.keypoints_crop_scored,
                                ground_truth=self.ground_truth_at("crop"), keypoints_set=self.keypoint_set)
        x0, y0, x1, y1 = self.crop_window()        # like the map panels: the part of the image the crop covers
        gt, box = self.ground_truth_at("image"), self.meta.get("box")
        kp = self.keypoints.copy()
        kp[:, :2] -= [x0, y0]
        if gt is not None:
            gt[:, :2] -= [x0, y0]
        box = None if box is None else (box[0] - x0, box[1] - y0, box[2], box[3])
        return figures.Tile(self.image[y0:y1, x0:x1], title, skeleton=kp, ground_truth=gt,
                            keypoints_set=self.keypoint_set, box=box, outline=self.crop_outline() - [x0, y0])

    def tile_size(self) -> tuple[int, int]:
        """(w, h) pixels of a mosaic tile: the input crop's shape, at most 256 high."""
        h, w = self.input_size
        f = min(1.0, 256 / h)
        return round(w * f), round(h * f)

    def grid(self, keypoints: list[str | int] | None = None, layers: list[int] | None = None,
             kind: str = "dependency", head: int | None = None, where: str = "crop", scale: str = "panel",
             at: str = "pred"):
        """The official figure: a row per layer, a column per keypoint, the pose once (first row). With one
        keypoint or one layer, a single sequence after the pose (wrapped every 6). `scale`: each panel its own
        range and bar ("panel", as the official visualisation), one range ("shared") or 0..1 ("absolute");
        1/N marked on the bars. One mosaic image (fast), within MAX_FIGURE_IN inches a side; over the image,
        the part the crop covers. `at`: query the predicted or ground-truth joints (unlabelled ones: an
        empty "not labelled" panel). The figure's `panel_norms`: the maps' colour limits, in drawing order."""
        figures.check_scale(scale)
        keypoints = list(self.keypoint_names) if keypoints is None else keypoints
        layers = list(range(self.num_layers)) if layers is None else [self.layer_index(i) for i in layers]
        if len(keypoints) == 1 or len(layers) == 1:
            seq = [None] + [(kp, layer) for layer in layers for kp in keypoints]
            cols = min(6, len(seq))
            rows = [seq[i:i + cols] for i in range(0, len(seq), cols)]
        else:
            rows = [[None] + [(kp, layer) for kp in keypoints] for layer in layers]
        missing = self.unlabelled(keypoints) if at == "gt" else set()
        maps = {p: None if p[0] in missing else self.attention_map(kind, p[0], p[1], head, at=at)
                for row in rows for p in row if p is not None}
        query = "" if self.layout.special else f"; rNcM: the queried token, {self.query_convention} convention"
        at_text = ", at the ground truth" if at == "gt" else ""
        return self.mosaic_figure(rows, maps, where, scale, f"{kind} maps ("
                                  f"{'mean of heads' if head is None else f'head {head}'}{at_text}{query}")

    def unlabelled(self, keypoints: list[str | int]) -> set:
        """Those of `keypoints` without a labelled ground-truth joint; if none is labelled, the first's error."""
        errors = {}
        for kp in keypoints:
            try:
                self.ground_truth_joint(kp)
            except ValueError as e:
                errors[kp] = e
        if keypoints and len(errors) == len(keypoints):
            raise errors[keypoints[0]]
        return set(errors)

    def mosaic_figure(self, rows: list[list[tuple | None]], maps: dict, where: str = "crop", scale: str = "panel",
                      what: str = "maps", below_in: float = 0.0, inches_per_tile: float = 2.4):
        """Maps as one mosaic image: `rows` of (keypoint, layer) keys of `maps` (None: the pose; a None map:
        "not labelled"), rows of layers and columns of keypoints headed once, or a sequence titled per panel. One
        colour bar unless `scale` is "panel"; `below_in` inches free at the bottom. `panel_norms`: the limits."""
        figures.check_scale(scale)
        keys = [p for row in rows for p in row if p is not None and maps[p] is not None]
        norms = [figures.make_norm(lo, hi) for lo, hi in figures.limits([maps[p].values for p in keys], scale)]
        norm_of = dict(zip(keys, norms))
        per_panel, cols = scale == "panel", max(len(r) for r in rows)
        headed = len(rows) > 1 and all(r[0] is None for r in rows) and len({p[1] for p in rows[0][1:]}) == 1

        def token(m):
            return f"\ntoken r{m.token_cell[0]} c{m.token_cell[1]}" if m.token_cell is not None else ""
        def tile(p, r):
            if p is None:     # the prediction once, in the first row: repeated, it only hides the person
                return self.pose_tile(where, title="" if headed else None) if r == 0 else None
            m = maps[p]
            if m is None:     # the joint is not labelled: nothing to query at the ground truth; the crop dimmed
                x0, y0, x1, y1 = self.crop_window()
                image = self.image[y0:y1, x0:x1] if where == "image" else self.crop_image
                return figures.Tile((image * 0.35 + 150).astype(np.uint8), "" if headed else
                                    f"{p[0]} · layer {p[1] + 1}", note="not labelled")
            return m.tile(where, norm_of[p], "" if headed else f"{m.keypoint} · layer {p[1] + 1}{token(m)}",
                          colorbar=per_panel)
        tiles = [[tile(p, r) for p in row] for r, row in enumerate(rows)]
        col_titles = row_titles = None
        if headed:
            col_titles = [self.pose_tile(where).title] + [f"{p[0]}{token(maps[p]) if maps[p] else ''}"
                                                          for p in rows[0][1:]]
            row_titles = [f"layer {row[1][1] + 1}" for row in rows]
        size = self.tile_size()
        head_in, foot_in, bar_in = 0.45, 0.3, (0.0 if per_panel else 0.9)   # head: the two-line title
        w, h = figures.mosaic_size(len(rows), cols, size, per_panel, inches_per_tile, bar_in,
                                   head_in + foot_in + below_in, not headed, headed, headed)
        w = max(w, 11.0 if below_in else 0.0)
        maps_h = h - head_in - foot_in - below_in
        bottom = (foot_in + below_in) / h
        fig = plt.figure(figsize=(w, h))
        ax = figures.mosaic(fig, (0.005, bottom, 1 - (bar_in + 0.05) / w, maps_h / h), tiles, size,
                            fontsize=min(8.0, max(5.5, 3.2 * w / cols)), col_titles=col_titles,
                            row_titles=row_titles)
        fig.mosaic_tiles = tiles
        if not per_panel and norms:
            from matplotlib.cm import ScalarMappable
            x = min(ax.drawn_box[0] + ax.drawn_box[2] + 0.12 / w, 1 - 0.75 / w)    # beside the maps, not the rect
            cax = fig.add_axes((x, bottom + 0.15 * maps_h / h, 0.12 / w, 0.7 * maps_h / h))
            cb = fig.colorbar(ScalarMappable(norms[0], figures.CMAP), cax=cax)
            cb.ax.tick_params(labelsize=6)
            cb.set_label(f"attention ({scale} scale)", fontsize=7)
            figures.mark_uniform(cb, 1.0 / self.layout.num_tokens)
        fig.suptitle(f"{self.caption}\n{what}; colour scale: {scale}, 1/N = uniform)", fontsize=9,
                     y=1 - 0.05 / h, va="top")
        figures.skeleton_legend(fig, ground_truth=self.ground_truth is not None, query=True,
                                box=where == "image" and self.meta.get("box") is not None,
                                bbox_to_anchor=(0.5, bottom - 0.02 / h), loc="upper center")
        fig.panel_norms, fig.laid_out = norms, True    # laid out to the inch: saved untrimmed (write_figure)
        return fig

    def layers(self, keypoint: str | int, kind: str = "dependency", head: int | None = None, scale: str = "panel"):
        """The keypoint's map at every layer, side by side."""
        return self.grid([keypoint], None, kind, head, scale=scale)

    def figure(self, where: str = "image"):
        """The prediction (with the ground truth, and the person box on the image) under the caption."""
        fig, (ax,) = _panels_figure(1, self.image if where == "image" else self.crop_image, 3.6, 0.8, 0.6)
        self.pose_panel(ax, where, legend=True)
        fig.suptitle(self.caption, fontsize=9)
        return fig
