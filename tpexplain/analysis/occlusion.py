"""Occlusion studies: hide part of the person and see what the prediction and its dependencies do.

- `occlusion_study`: hide a region or a named body part, compare pose, heatmap peak and dependency map.
- `occlusion_sensitivity`: slide a patch over the model input and record how much each keypoint's heatmap
  value at its clean peak drops, a perturbation-based dependency map to hold against the attention one.
- `symmetric_study`: hide a limb keypoint and measure how much of its dependency moves to the mirror joint.

Fills: "mean" paints the image's mean colour (per channel), "blur" a strong Gaussian blur of the image
(sigma a quarter of the hidden region's shorter side, at least 2 px), "noise" Gaussian noise with the
image's per-channel mean and standard deviation (seeded).
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import figures
from ..explanation import AttentionMap, Explanation
from ..io import as_rgb, write_text_atomic
from ..keypoints import BODY_PARTS, COCO_KEYPOINTS, HEAD, flip_index, keypoint_index

from .depth import default_radius, person_size
from .regions import REGIONS, TORSO, region_masses

FILLS = ("mean", "blur", "noise")


# ---------------------------------------------------------------------------------------------------
# Hiding a region

def _check_fill(fill: str) -> str:
    if fill not in FILLS:
        raise ValueError(f"unknown fill '{fill}'; use one of {', '.join(FILLS)}")
    return fill


def region_mask(shape: tuple[int, ...], region: tuple | np.ndarray) -> np.ndarray:
    """A boolean (H, W) mask from a box (x, y, w, h) in pixels (partly outside is clipped) or a mask."""
    h, w = shape[:2]
    if isinstance(region, np.ndarray) and region.ndim == 2:
        if region.shape != (h, w):
            raise ValueError(f"region mask is {region.shape[1]}x{region.shape[0]}, the image is {w}x{h}")
        mask = region.astype(bool)
    else:
        try:
            x, y, rw, rh = (float(v) for v in region)
        except (TypeError, ValueError):
            raise ValueError(f"bad region {region!r}: expected x,y,w,h or a boolean mask") from None
        if not all(np.isfinite((x, y, rw, rh))) or rw <= 0 or rh <= 0:
            raise ValueError(f"bad region {region!r}: width and height must be positive")
        mask = np.zeros((h, w), bool)
        mask[max(int(np.floor(y)), 0):max(int(np.ceil(y + rh)), 0),
             max(int(np.floor(x)), 0):max(int(np.ceil(x + rw)), 0)] = True
    if not mask.any():
        raise ValueError(f"region {_describe(region)} covers no pixel of the {w}x{h} image")
    return mask


def _describe(region) -> str:
    return "mask" if isinstance(region, np.ndarray) and region.ndim == 2 else ",".join(f"{v:g}" for v in region)


def fill_image(image: np.ndarray, fill: str, mask: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """What the hidden pixels become: a float32 image the size of `image` (see the module docstring)."""
    _check_fill(fill)
    img = np.asarray(image, dtype=np.float32)
    flat = img.reshape(-1, img.shape[-1]) if img.ndim == 3 else img.reshape(-1, 1)
    if fill == "mean":
        return np.broadcast_to(flat.mean(0).reshape((1, 1, -1)) if img.ndim == 3 else flat.mean(),
                               img.shape).astype(np.float32)
    if fill == "noise":
        rng = np.random.default_rng(seed)
        mean = flat.mean(0).reshape((1, 1, -1)) if img.ndim == 3 else flat.mean()
        std = flat.std(0).reshape((1, 1, -1)) if img.ndim == 3 else flat.std()
        return (mean + std * rng.standard_normal(img.shape)).astype(np.float32)
    side = min(img.shape[:2])
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        side = min(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    sigma = max(2.0, side / 4.0)
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def hide(image: np.ndarray, region: tuple | np.ndarray, fill: str = "mean", seed: int = 0) -> np.ndarray:
    """A copy of `image` with `region` (x, y, w, h in pixels, or a boolean mask) hidden by `fill`."""
    _check_fill(fill)
    img = np.asarray(image)
    mask = region_mask(img.shape, region)
    values = fill_image(img, fill, mask, seed)
    out = img.copy()
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    out[mask] = values[mask].astype(img.dtype)
    return out


PART_NAMES = tuple(BODY_PARTS) + COCO_KEYPOINTS


def _part_joints(part: str, names: tuple[str, ...]) -> tuple[str, tuple[int, ...]]:
    key = str(part).strip().lower().replace("-", "_").replace(" ", "_")
    key = {"l_arm": "left_arm", "r_arm": "right_arm", "l_leg": "left_leg", "r_leg": "right_leg"}.get(key, key)
    if key in BODY_PARTS:
        if tuple(names) != COCO_KEYPOINTS:
            raise ValueError(f"body part '{part}' needs the 17 COCO keypoints; name a keypoint instead")
        return key, BODY_PARTS[key]
    try:
        k = keypoint_index(key, names)
        return names[k], (k,)
    except ValueError:
        pass
    close = difflib.get_close_matches(key, list(BODY_PARTS) + list(names), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"use a keypoint name or one of {', '.join(BODY_PARTS)}"
    raise ValueError(f"unknown body part '{part}'; {hint}")


def part_region(ex: Explanation, part: str) -> np.ndarray:
    """Image-space boolean mask of a keypoint (a disc) or a body part of `BODY_PARTS`, from the predicted pose.

    Discs around the part's joints and thick lines along its bones, radius `default_radius` (a tenth of the
    person's size) mapped to image pixels; the torso is the filled shoulders-hips quadrilateral, the head
    the filled hull of the head keypoints, each grown by the same radius.
    """
    name, joints = _part_joints(part, ex.keypoint_names)
    lin = ex.crop.from_crop[:, :2]
    r = default_radius(ex) * float(np.sqrt(abs(np.linalg.det(lin))))   # crop px → image px
    ih, iw = ex.image.shape[:2]
    kp = np.asarray(ex.keypoints[:, :2], dtype=np.float64)
    canvas = np.zeros((ih, iw), np.uint8)
    rr = max(int(round(r)), 1)
    pts = [tuple(int(round(v)) for v in kp[j]) for j in joints]
    for p in pts:
        cv2.circle(canvas, p, rr, 1, thickness=-1)
    for a in joints:
        for b in joints:
            if a < b and _is_bone(a, b):
                cv2.line(canvas, pts[joints.index(a)], pts[joints.index(b)], 1, thickness=2 * rr)
    if name in ("torso", "head"):
        poly = kp[list(TORSO) if name == "torso" else list(HEAD)].astype(np.float32)
        hull = cv2.convexHull(poly).astype(np.int32)
        cv2.fillConvexPoly(canvas, hull, 1)
        cv2.polylines(canvas, [hull], True, 1, thickness=2 * rr)
    mask = canvas.astype(bool)
    if not mask.any():
        raise ValueError(f"body part '{part}' lies outside the image")
    return mask


def _is_bone(a: int, b: int) -> bool:
    from ..keypoints import SKELETON
    return (a, b) in SKELETON or (b, a) in SKELETON


# ---------------------------------------------------------------------------------------------------
# Region / part study

@dataclass
class OcclusionStudy(figures.Displayable):
    """One keypoint before and after hiding a region: pose, heatmap peak, dependency and its regions."""

    keypoint: str
    hidden: str                       # what was hidden: a part name or "x,y,w,h"
    fill: str
    mask: np.ndarray = field(repr=False)   # image-space hidden pixels
    before: Explanation = field(repr=False)
    after: Explanation = field(repr=False)
    displacement_px: float            # image pixels
    displacement_norm: float          # in person sizes (the clean prediction's)
    peak_before: float
    peak_after: float
    peak_drop: float
    value_at_clean_peak_after: float
    masses_before: dict[str, float]
    masses_after: dict[str, float]
    displacements_px: dict[str, float]   # every keypoint

    def summary(self) -> dict:
        keys = ("keypoint", "hidden", "fill", "displacement_px", "displacement_norm", "peak_before", "peak_after",
                "peak_drop", "value_at_clean_peak_after", "masses_before", "masses_after", "displacements_px")
        out = {k: getattr(self, k) for k in keys}
        out["mass_shift"] = {r: self.masses_after[r] - self.masses_before[r] for r in REGIONS}
        out["hidden_pixels"] = int(self.mask.sum())
        out["model"] = self.before.model_name
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        """The numbers as JSON (written atomically to `path` if given)."""
        return _summary_json(self.summary(), path)

    def table(self) -> str:
        lines = [f"hide {self.hidden} ({self.fill}) → {self.keypoint}",
                 f"displacement {self.displacement_px:.1f} px = {self.displacement_norm:.3f} person sizes",
                 f"heatmap peak {self.peak_before:.4f} → {self.peak_after:.4f} (drop {self.peak_drop:+.4f}); "
                 f"at the clean peak {self.value_at_clean_peak_after:.4f}",
                 f"{'region':<11} {'before':>7} {'after':>7} {'shift':>7}"]
        for r in REGIONS:
            b, a = self.masses_before[r], self.masses_after[r]
            lines.append(f"{r:<11} {b:>7.3f} {a:>7.3f} {a - b:>+7.3f}")
        return "\n".join(lines)

    def figure(self):
        """Before (top) and after (bottom): pose, the keypoint's heatmap, its dependency map; region masses."""
        fig = plt.figure(figsize=(12, 7.6))
        grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.3], wspace=0.45)
        k = self.before.keypoint(self.keypoint)
        mask_crop = cv2.warpAffine(self.mask.astype(np.float32), self.before.crop.to_crop,
                                   self.before.input_size[::-1], flags=cv2.INTER_NEAREST)
        for row, (ex, label) in enumerate(((self.before, "before"), (self.after, "after"))):
            axes = [fig.add_subplot(grid[row, c]) for c in range(3)]
            figures.pose_panel(axes[0], ex.crop_image, ex.keypoints_crop_scored, title=f"{label}: prediction")
            heat = cv2.resize(ex.heatmaps[k].float().numpy(), ex.input_size[::-1], interpolation=cv2.INTER_LINEAR)
            figures.overlay(axes[1], ex.crop_image, heat, tuple(ex.keypoints_crop[k]), colorbar=True,
                            title=f"{label}: {self.keypoint} heatmap, peak {float(ex.heatmaps[k].max()):.3f}")
            ex.dependency(k).plot(axes[2], title=f"{label}: {self.keypoint} dependency (last layer)")
            if row == 1 and mask_crop.any():
                for ax in axes:
                    ax.contour(mask_crop, levels=[0.5], colors="white", linewidths=1.0, linestyles="--")
        ax = fig.add_subplot(grid[:, 3])
        xs = np.arange(len(REGIONS))
        ax.bar(xs - 0.2, [self.masses_before[r] for r in REGIONS], 0.4, label="before")
        ax.bar(xs + 0.2, [self.masses_after[r] for r in REGIONS], 0.4, label="after")
        ax.set_xticks(xs, REGIONS, rotation=30, fontsize=8)
        ax.set_ylabel("share of dependency mass", fontsize=8)
        ax.legend(fontsize=8)
        ax.set_title(f"{self.keypoint}: displacement {self.displacement_px:.1f}px "
                     f"({self.displacement_norm:.2f} person)\npeak drop {self.peak_drop:+.3f}", fontsize=9)
        fig.suptitle(f"{self.before.model_name}: hide {self.hidden} ({self.fill} fill)", fontsize=10)
        return fig



def occlusion_study(pose_model, image, keypoint: str | int, bbox: tuple | None = None,
                    region: tuple | np.ndarray | None = None, part: str | None = None,
                    fill: str = "mean", seed: int = 0, flip: bool = True) -> OcclusionStudy:
    """Hide `region` (x, y, w, h image pixels, or a mask) or a body `part` (default: the keypoint itself)
    and compare `keypoint`'s prediction, heatmap peak and dependency map before and after.

    Dependency masses are sorted into the regions of the clean pose (`region_masks`), before and after.
    """
    _check_fill(fill)
    if region is not None and part is not None:
        raise ValueError("give a region or a part, not both")
    img = as_rgb(image)
    k = keypoint_index(keypoint, pose_model.keypoint_names)
    name = pose_model.keypoint_names[k]
    if region is None:
        part = name if part is None else part
        _part_joints(part, pose_model.keypoint_names)       # fail on a bad name before any forward pass
    else:
        region_mask(img.shape, region)
    before = pose_model.explain(img, bbox=bbox, flip=flip)
    if region is None:
        mask, hidden = part_region(before, part), _part_joints(part, before.keypoint_names)[0]
    else:
        mask, hidden = region_mask(img.shape, region), _describe(region)
    after = pose_model.explain(hide(img, mask, fill, seed), bbox=bbox, flip=flip)

    disp = np.hypot(*(after.keypoints[:, :2] - before.keypoints[:, :2]).T)
    disp_crop = float(np.hypot(*(after.keypoints_crop[k] - before.keypoints_crop[k])))
    hb, ha = before.heatmaps[k], after.heatmaps[k]
    clean_peak = int(hb.flatten().argmax())
    return OcclusionStudy(
        keypoint=name, hidden=hidden, fill=fill, mask=mask, before=before, after=after,
        displacement_px=float(disp[k]), displacement_norm=disp_crop / person_size(before),
        peak_before=float(hb.max()), peak_after=float(ha.max()), peak_drop=float(hb.max() - ha.max()),
        value_at_clean_peak_after=float(ha.flatten()[clean_peak]),
        masses_before=_masses(before, before, k), masses_after=_masses(before, after, k),
        displacements_px={before.keypoint_names[i]: float(d) for i, d in enumerate(disp)})


def _masses(clean: Explanation, ex: Explanation, k: int) -> dict[str, float]:
    """k's last-layer dependency mass per body region of the clean pose (none for non-COCO keypoints)."""
    if tuple(clean.keypoint_names) != COCO_KEYPOINTS:
        return {r: float("nan") for r in REGIONS}
    return region_masses(clean, ex.dependency(k).values, k)


def symmetric_study(pose_model, image, keypoint: str | int, bbox: tuple | None = None, fill: str = "mean",
                    seed: int = 0, flip: bool = True) -> dict:
    """Hide a keypoint that has a mirror joint (l_ankle ↔ r_ankle) and measure how much of its dependency
    mass moves onto the mirror joint (and onto the adjacent joints).

    Returns mirror, mirror_mass_before/after, mirror_shift, adjacent_mass_before/after, adjacent_shift,
    displacement_px/norm, peak_drop, the region masses, and the `study` (an `OcclusionStudy`, for figures).
    """
    k = keypoint_index(keypoint, pose_model.keypoint_names)
    mirror = flip_index(k)
    names = pose_model.keypoint_names
    if mirror == k:
        raise ValueError(f"'{names[k]}' has no mirror joint; use a left or right keypoint")
    s = occlusion_study(pose_model, image, k, bbox=bbox, part=names[k], fill=fill, seed=seed, flip=flip)
    b, a = s.masses_before, s.masses_after
    return {"keypoint": names[k], "mirror": names[mirror], "fill": fill,
            "mirror_mass_before": b["symmetric"], "mirror_mass_after": a["symmetric"],
            "mirror_shift": a["symmetric"] - b["symmetric"],
            "adjacent_mass_before": b["adjacent"], "adjacent_mass_after": a["adjacent"],
            "adjacent_shift": a["adjacent"] - b["adjacent"],
            "displacement_px": s.displacement_px, "displacement_norm": s.displacement_norm,
            "peak_drop": s.peak_drop, "masses_before": b, "masses_after": a, "study": s}


# ---------------------------------------------------------------------------------------------------
# Occlusion sensitivity (the sweep)

def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window origins along one axis, as Captum's Occlusion places them (the last may overhang, clipped)."""
    return [i * stride for i in range(int(np.ceil((size - window) / stride)) + 1)]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    def ranks(x):
        x = np.asarray(x, dtype=np.float64).ravel()
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        # ties share their mean rank
        _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


@dataclass
class SensitivityMap(figures.Displayable):
    """Per keypoint, the drop of its clean-peak heatmap value when each window is hidden."""

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
        if isinstance(keypoint, int) and not isinstance(keypoint, bool):
            name = (self.explanation.keypoint_names if self.explanation else COCO_KEYPOINTS)[keypoint]
        else:
            name = COCO_KEYPOINTS[keypoint_index(keypoint)] if keypoint not in self.keypoints else keypoint
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
        return _spearman(self.on_tokens(keypoint, layout), values)

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

    def to_json(self, path: str | Path | None = None) -> str:
        """The numbers as JSON (written atomically to `path` if given)."""
        return _summary_json(self.summary(), path)

    def figure(self, keypoint: str | int | list | None = None, layer: int = -1):
        """Per keypoint: the occlusion-sensitivity map beside the attention dependency map, with their ρ."""
        ex = self.explanation
        if ex is None:
            raise ValueError("the figure needs the sweep's explanation")
        kps = self.keypoints if keypoint is None else ([keypoint] if isinstance(keypoint, (str, int)) else keypoint)
        kps = [self.keypoints[self.index(k)] for k in kps]
        if len(kps) == 1:
            fig, axes = plt.subplots(1, 3, figsize=(9.6, 4.2))
            axes = axes[:, None] if axes.ndim == 1 else axes
            figures.pose_panel(axes[0, 0], ex.crop_image, ex.keypoints_crop_scored, title=ex.model_name)
            cells = [(axes[1, 0], axes[2, 0])]
        else:    # pairs of rows (sensitivity over attention), at most 6 keypoints across
            cols = min(len(kps), 6)
            bands = -(-len(kps) // cols)
            fig, axes = plt.subplots(2 * bands, cols, figsize=(2.3 * cols, 6.4 * bands), squeeze=False)
            cells = [(axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]) for i in range(len(kps))]
            for i in range(len(kps), bands * cols):
                axes[2 * (i // cols), i % cols].set_axis_off()
                axes[2 * (i // cols) + 1, i % cols].set_axis_off()
        for (ax_s, ax_a), kp in zip(cells, kps):
            dep = ex.dependency(kp, layer=layer)
            rho = self.rank_correlation(dep)
            figures.overlay(ax_s, ex.crop_image, self.on_crop(kp), dep.query_crop, colorbar=len(kps) == 1,
                            title=f"{kp}: occlusion drop ({self.window}/{self.stride})")
            dep.plot(ax_a, colorbar=len(kps) == 1, title=f"{kp}: attention L{dep.layer + 1} · ρ={rho:.2f}")
        fig.suptitle(f"occlusion sensitivity vs attention ({self.fill} fill)", fontsize=10)
        return fig



def crop_fill(x: torch.Tensor, fill: str, window: int, seed: int = 0) -> torch.Tensor:
    """The (3, H, W) normalised input that hidden pixels take in the sweep (the crop's mean colour, a blur of
    the crop with sigma window/4, or noise with the crop's statistics)."""
    _check_fill(fill)
    img = x.detach().cpu().float().numpy().transpose(1, 2, 0)
    if fill == "blur":
        sigma = max(2.0, window / 4.0)
        out = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    else:
        out = fill_image(img, fill, seed=seed)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).to(x.dtype)


def occlusion_sensitivity(pose_model, image, bbox: tuple | None = None, window: int = 32, stride: int = 16,
                          fill: str = "mean", keypoints: list | None = None, batch_size: int = 4,
                          seed: int = 0, fast: bool = True, flip: bool = True) -> SensitivityMap:
    """Slide a `window`-pixel square over the model input crop (step `stride`, Captum's placement) and record,
    for every keypoint, how much its heatmap value at its clean peak drops.

    Every keypoint comes from the same batched forward passes. With `fast`, models the sweep knows
    (TransPose-R/H) skip work that cannot change (see `tpexplain.analysis.sweep`); results equal the plain
    per-window forward up to float rounding. The sweep's passes are un-flipped; `flip` only refines the
    explanation's predicted keypoints (the attention maps' queries).
    """
    _check_fill(fill)
    h, w = pose_model.input_size
    window, stride, batch_size = int(window), int(stride), int(batch_size)
    if not 1 <= window <= min(h, w):
        raise ValueError(f"window {window} must be between 1 and the input's shorter side ({min(h, w)} px)")
    if not 1 <= stride <= window:
        raise ValueError(f"stride {stride} must be between 1 and the window ({window})")
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    names = pose_model.keypoint_names
    if isinstance(keypoints, str) and keypoints.strip().lower() == "all":
        keypoints = None
    idx = list(range(len(names))) if keypoints is None else \
        [keypoint_index(k, names) for k in ([keypoints] if isinstance(keypoints, (str, int)) else keypoints)]
    ex = pose_model.explain(as_rgb(image), bbox=bbox, flip=flip)
    from .sweep import sweep
    x = ex.input
    starts_y, starts_x = window_starts(h, window, stride), window_starts(w, window, stride)
    boxes = [(y, xx) for y in starts_y for xx in starts_x]
    clean, peaks, drops = sweep(pose_model.model, x, crop_fill(x, fill, window, seed), boxes, window, idx,
                                batch_size, fast)
    return SensitivityMap(drops.reshape(len(idx), len(starts_y), len(starts_x)), [names[i] for i in idx],
                          window, stride, starts_y, starts_x, clean, peaks, (h, w), fill, ex)


def _summary_json(summary: dict, path: str | Path | None) -> str:
    text = json.dumps(summary, indent=1)
    if path is not None:
        write_text_atomic(path, text)
    return text
