"""Occlusion sensitivity: slide a patch over the model input and record how much each keypoint's heatmap
value at its clean peak drops, a perturbation-based dependency map to hold against the attention one.

`sweep` is the engine: heatmap values at fixed peaks for many occluded copies of one input. It runs the
plain batched forward for any model; a model class listed in `FAST_SWEEPS` gets its own sweeper instead,
which skips work that cannot change those values (TransPose: `tpexplain.models.transpose_sweep`). A sweeper
is built as `FAST_SWEEPS[type(model)](model, x, peaks, keypoints)` (None when it cannot handle that model)
and called per batch as `sweeper(occluded, boxes, window)` → (B, K) values.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from .. import figures
from ..explanation import AttentionMap, Explanation
from ..io import as_rgb
from ..keypoints import COCO_KEYPOINTS, keypoint_index
from ..progress import progress as progress_bar
from ..models.transpose import TransPoseH, TransPoseR
from ..models.transpose_sweep import TransPoseHSweep, transpose_r_sweeper
from .hiding import check_fill, fill_image
from .results import Result
from .stats import spearman

# Fast sweepers by exact model class: a subclass may change the forward, so it gets the plain one.
FAST_SWEEPS: dict[type, Callable] = {TransPoseR: transpose_r_sweeper, TransPoseH: TransPoseHSweep}
# The most forward passes a sweep starts unless told otherwise (`max_passes`): about 2 minutes for the default
# model on one CPU core, and hours for a ViTPose. The default window 32 / stride 16 takes 165 on 256x192.
MAX_PASSES = 5000
log = logging.getLogger(__name__)


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window origins along one axis, as Captum's Occlusion places them (the last may overhang, clipped)."""
    return [i * stride for i in range(int(np.ceil((size - window) / stride)) + 1)]


def sweep_passes(input_size: tuple[int, int], window: int, stride: int) -> int:
    """The number of occluded forward passes a sweep makes: one per window position."""
    h, w = input_size
    return len(window_starts(h, window, stride)) * len(window_starts(w, window, stride))


@dataclass
class SensitivityMap(Result):
    """Per keypoint, the drop of its clean-peak heatmap value when each window is hidden.

    `to_json` writes `summary()`; `to_csv` one row per keypoint and window: keypoint, row, col, y, x
    (the window's origin in input-crop pixels), window, drop.
    """

    drops: np.ndarray                 # (K, gy, gx) clean value − occluded value, on the window grid
    keypoints: list[str]
    window: int
    stride: int
    starts_y: list[int]
    starts_x: list[int]
    clean: np.ndarray                 # (K,) clean heatmap value at the peak
    peaks: np.ndarray                 # (K, 2) heatmap (x, y) of the clean, un-flipped peak
    input_size: tuple[int, int]
    fill: str
    explanation: Explanation | None = field(default=None, repr=False)

    def index(self, keypoint: str | int) -> int:
        """Position of a keypoint (a name, an alias, or the model's keypoint index) among the swept ones."""
        # without the explanation (a map built by hand), keypoints are COCO's
        names = self.explanation.keypoint_names if self.explanation else COCO_KEYPOINTS
        if isinstance(keypoint, int) and not isinstance(keypoint, bool):
            name = names[keypoint]
        else:
            name = names[keypoint_index(keypoint, names)] if keypoint not in self.keypoints else keypoint
        if name not in self.keypoints:
            raise ValueError(f"keypoint '{name}' was not in the sweep ({', '.join(self.keypoints)})")
        return self.keypoints.index(name)

    def map(self, keypoint: str | int) -> np.ndarray:
        """(gy, gx) drops of one keypoint on the window grid."""
        return self.drops[self.index(keypoint)]

    def on_crop(self, keypoint: str | int) -> np.ndarray:
        """Per input pixel, the mean drop of the windows covering it (Captum's Occlusion convention)."""
        h, w = self.input_size
        total = np.zeros((h, w), np.float64)
        count = np.zeros((h, w), np.float64)
        d = self.map(keypoint)
        for i, y in enumerate(self.starts_y):
            for j, x in enumerate(self.starts_x):
                total[y:y + self.window, x:x + self.window] += d[i, j]
                count[y:y + self.window, x:x + self.window] += 1
        return np.divide(total, count, out=np.zeros_like(total), where=count > 0)

    def on_tokens(self, keypoint: str | int, layout) -> np.ndarray:
        """`on_crop` averaged over each token's pixels: the attention map's grid."""
        gh, gw = layout.grid
        sy, sx = (int(s) for s in layout.stride)
        return self.on_crop(keypoint)[:gh * sy, :gw * sx].reshape(gh, sy, gw, sx).mean((1, 3))

    def rank_correlation(self, attention: AttentionMap | np.ndarray, keypoint: str | int | None = None) -> float:
        """Spearman correlation, over the token grid, between this map and an attention map of the same
        keypoint (the keypoint is the map's own when an `AttentionMap` is given)."""
        if isinstance(attention, AttentionMap):
            keypoint = attention.keypoint if keypoint is None else keypoint
            values, layout = attention.values, attention.explanation.layout
        else:
            if self.explanation is None:
                raise ValueError("an array attention map needs the sweep's explanation for the token grid")
            values, layout = np.asarray(attention), self.explanation.layout
        if keypoint is None:
            if len(self.keypoints) != 1:
                raise ValueError("say which keypoint the attention map belongs to")
            keypoint = self.keypoints[0]
        if values.shape != tuple(layout.grid):
            raise ValueError(f"attention map shape {values.shape} is not the token grid {layout.grid}")
        return spearman(self.on_tokens(keypoint, layout), values)

    def summary(self) -> dict:
        out = {"keypoints": self.keypoints, "window": self.window, "stride": self.stride, "fill": self.fill,
               "starts_y": self.starts_y, "starts_x": self.starts_x, "input_size": list(self.input_size),
               "clean_peak": {k: float(v) for k, v in zip(self.keypoints, self.clean)},
               "max_drop": {k: float(self.drops[i].max()) for i, k in enumerate(self.keypoints)},
               "drops": {k: self.drops[i].round(6).tolist() for i, k in enumerate(self.keypoints)}}
        if self.explanation is not None:
            out["model"] = self.explanation.model_name
            out["rank_correlation_last_layer"] = {
                k: self.rank_correlation(self.explanation.dependency(k)) for k in self.keypoints}
        return out

    def csv_rows(self) -> tuple[list[str], list[list]]:
        rows = [[kp, r, c, y, x, self.window, f"{self.drops[i, r, c]:.6g}"]
                for i, kp in enumerate(self.keypoints)
                for r, y in enumerate(self.starts_y) for c, x in enumerate(self.starts_x)]
        return ["keypoint", "row", "col", "y", "x", "window", "drop"], rows

    def figure(self, keypoint: str | int | list | None = None, layer: int = -1, scale: str = "shared"):
        """Per keypoint: the occlusion-sensitivity map (the drop, signed: a diverging scale centred at 0)
        beside the attention dependency map (1/N marked), with their ρ. `scale`: one colour range per kind for
        all keypoints ("shared"), each panel its own ("panel"), or the absolute range (drops -1..1,
        attention 0..1)."""
        ex = self.explanation
        if ex is None:
            raise ValueError("the figure needs the sweep's explanation")
        figures.check_scale(scale)
        kps = self.keypoints if keypoint is None else ([keypoint] if isinstance(keypoint, (str, int)) else keypoint)
        kps = [self.keypoints[self.index(k)] for k in kps]
        deps = [ex.dependency(kp, layer=layer) for kp in kps]
        drops = [self.on_crop(kp) for kp in kps]
        drop_lims = figures.limits(drops, scale, signed=True)
        dep_lims = figures.limits([d.values for d in deps], scale)
        single = len(kps) == 1
        if single:
            fig, axes = plt.subplots(1, 3, figsize=(10.4, 4.6), gridspec_kw={"wspace": 0.3})   # room: bar labels
            axes = axes[:, None]
            ex.pose_panel(axes[0, 0], legend=True)
            cells = [(axes[1, 0], axes[2, 0])]
        else:    # pairs of rows (sensitivity over attention), at most 6 keypoints across
            cols = min(len(kps), 6)
            bands = -(-len(kps) // cols)
            size = (2.5 * cols + 1.2, 6.4 * bands + 0.9)
            fig, axes = plt.subplots(2 * bands, cols, figsize=size, squeeze=False)
            fig.subplots_adjust(left=0.02, right=1 - 1.1 / size[0], top=1 - 0.9 / size[1], bottom=0.02,
                                hspace=0.25, wspace=0.08)
            cells = [(axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]) for i in range(len(kps))]
            for i in range(len(kps), bands * cols):
                axes[2 * (i // cols), i % cols].set_axis_off()
                axes[2 * (i // cols) + 1, i % cols].set_axis_off()
        own_bars = single or scale == "panel"
        im_s = im_a = None
        for (ax_s, ax_a), kp, dep, drop, dl, al in zip(cells, kps, deps, drops, drop_lims, dep_lims):
            rho = self.rank_correlation(dep)
            im_s = figures.overlay(ax_s, ex.crop_image, drop, dep.query_crop, colorbar=False, signed=True,
                                   vmin=dl[0], vmax=dl[1], title=f"{kp}: occlusion drop\n(window {self.window}, "
                                                                  f"stride {self.stride})")
            im_a = dep.plot(ax_a, colorbar=False, vmin=al[0], vmax=al[1],
                            title=f"{kp}: attention, layer {dep.layer + 1}\nρ={rho:.2f}")
            if own_bars:
                figures.add_colorbar(im_s, ax_s, label="heatmap drop" if single else None)
                figures.add_colorbar(im_a, ax_a, dep.uniform)
            if single:
                dep.marker_legend(ax_a)
        if not own_bars:     # one bar per kind, right of the grid: drops above, attention below
            x = 1 - 0.85 / fig.get_figwidth()
            for im, (y0, y1), label, uniform in ((im_s, (0.55, 0.85), "heatmap drop", None),
                                                 (im_a, (0.12, 0.42), "attention", deps[0].uniform)):
                cb = fig.colorbar(im, cax=fig.add_axes((x, y0, 0.14 / fig.get_figwidth(), y1 - y0)))
                cb.ax.tick_params(labelsize=6)
                cb.set_label(f"{label} ({scale} scale)", fontsize=7)
                if uniform is not None:
                    figures.mark_uniform(cb, uniform)
        fig.suptitle(f"{ex.caption}\nocclusion sensitivity vs attention ({self.fill} fill; drop: red = the "
                     f"keypoint's heatmap fell, blue = it rose; colour scale: {scale})", fontsize=9)
        return fig


def crop_fill(x: torch.Tensor, fill: str, window: int, seed: int = 0) -> torch.Tensor:
    """The (3, H, W) normalised input that hidden pixels take in the sweep (the crop's mean colour, a blur of
    the crop with sigma window/4, or noise with the crop's statistics)."""
    check_fill(fill)
    img = x.detach().cpu().float().numpy().transpose(1, 2, 0)
    if fill == "blur":
        sigma = max(2.0, window / 4.0)
        out = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    else:
        out = fill_image(img, fill, seed=seed)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).to(x.dtype)


def occlusion_sensitivity(pose_model, image, bbox: tuple | None = None, window: int = 32, stride: int = 16,
                          fill: str = "mean", keypoints: list | None = None, batch_size: int = 4,
                          seed: int = 0, fast: bool = True, flip: bool = True,
                          max_passes: int | None = MAX_PASSES, progress: bool = False) -> SensitivityMap:
    """Slide a `window`-pixel square over the model input crop (step `stride`, Captum's placement) and record,
    for every keypoint, how much its heatmap value at its clean peak drops.

    Every keypoint comes from the same batched forward passes. With `fast`, models in `FAST_SWEEPS`
    (TransPose-R/H) skip work that cannot change (see `tpexplain.models.transpose_sweep`); results equal the
    plain per-window forward up to float rounding. The sweep's passes are un-flipped; `flip` only refines the
    explanation's predicted keypoints (the attention maps' queries).

    A sweep of more than `max_passes` forward passes (`sweep_passes`; default `MAX_PASSES`) is refused before
    any work; None lifts the bound. `progress` logs the number of passes before starting and shows progress.
    """
    check_fill(fill)
    h, w = pose_model.input_size
    window, stride, batch_size = int(window), int(stride), int(batch_size)
    if not 1 <= window <= min(h, w):
        raise ValueError(f"window {window} must be between 1 and the input's shorter side ({min(h, w)} px)")
    if not 1 <= stride <= window:
        raise ValueError(f"stride {stride} must be between 1 and the window ({window})")
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    passes = sweep_passes((h, w), window, stride)
    if max_passes is not None and passes > max_passes:
        raise ValueError(f"the sweep would make {passes:,} forward passes (window {window}, stride {stride} over "
                         f"the {h}x{w} input), more than the bound of {max_passes:,}; use a larger window or "
                         "stride, or raise the bound (max_passes; the CLI's --max-passes)")
    names = pose_model.keypoint_names
    if isinstance(keypoints, str) and keypoints.strip().lower() == "all":
        keypoints = None
    idx = list(range(len(names))) if keypoints is None else \
        [keypoint_index(k, names) for k in ([keypoints] if isinstance(keypoints, (str, int)) else keypoints)]
    ex = pose_model.explain(as_rgb(image), bbox=bbox, flip=flip)
    x = ex.input
    starts_y, starts_x = window_starts(h, window, stride), window_starts(w, window, stride)
    boxes = [(y, xx) for y in starts_y for xx in starts_x]
    if progress:
        log.info(f"occlusion sweep: {passes:,} forward passes ({len(starts_y)}x{len(starts_x)} windows of "
                 f"{window} px, stride {stride})")
    with progress_bar(len(boxes), "sweep", "passes", enabled=progress) as bar:
        clean, peaks, drops = sweep(pose_model.model, x, crop_fill(x, fill, window, seed), boxes, window, idx,
                                    batch_size, fast, bar=bar)
    return SensitivityMap(drops.reshape(len(idx), len(starts_y), len(starts_x)), [names[i] for i in idx],
                          window, stride, starts_y, starts_x, clean, peaks, (h, w), fill, ex)


# ---------------------------------------------------------------------------------------------------
# The engine

def occlude(x: torch.Tensor, fill: torch.Tensor, boxes: list[tuple[int, int]], window: int) -> torch.Tensor:
    """A batch of copies of `x` (3, H, W), copy i with the window at boxes[i] = (y, x) taken from `fill`."""
    xb = x.unsqueeze(0).repeat(len(boxes), 1, 1, 1)
    for i, (y, x0) in enumerate(boxes):
        xb[i, :, y:y + window, x0:x0 + window] = fill[:, y:y + window, x0:x0 + window]
    return xb


@torch.no_grad()
def sweep(model: nn.Module, x: torch.Tensor, fill: torch.Tensor, boxes: list[tuple[int, int]], window: int,
          keypoints: list[int], batch_size: int = 4, fast: bool = True, bar=None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean values (K,), peaks (K, 2) heatmap x, y, drops (K, len(boxes))) for the keypoint indices given.

    The value of keypoint k is its heatmap at the clean input's (un-flipped) argmax; a drop is the clean
    value minus the occluded one. With `fast`, the model's sweeper from `FAST_SWEEPS` computes the values.
    `bar`: a `tpexplain.progress` reporter told of each batch of passes.
    """
    x, fill = x.float(), fill.float()
    clean_maps = model(x[None])[0]                         # (J, h, w)
    k = torch.as_tensor(keypoints, dtype=torch.long)
    flat = clean_maps.flatten(1)[k].argmax(1)              # (K,)
    clean = clean_maps.flatten(1)[k, flat]
    hw = clean_maps.shape[-1]
    peaks = torch.stack([flat % hw, flat // hw], 1)        # (K, 2) x, y on the heatmap
    sweeper = fast_sweeper(model, x, peaks, k) if fast else None
    values = []
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        occluded = occlude(x, fill, chunk, window)
        if sweeper is not None:
            values.append(sweeper(occluded, chunk, window))
        else:
            values.append(model(occluded).flatten(2)[:, k, flat])     # (b, K)
        if bar is not None:
            bar.update(len(chunk))
    values = torch.cat(values).T                           # (K, n)
    return clean.numpy(), peaks.numpy(), (clean[:, None] - values).numpy()


def fast_sweeper(model: nn.Module, x: torch.Tensor, peaks: torch.Tensor, keypoints: torch.Tensor):
    """The model's fast sweeper from `FAST_SWEEPS`, or None (the plain forward) for any other model."""
    if model.training:        # batch-statistics BatchNorm is not local; keep the plain forward
        return None
    make = FAST_SWEEPS.get(type(model))
    return None if make is None else make(model, x, peaks, keypoints)
