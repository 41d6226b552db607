"""The occlusion study: hide part of the person and see what the prediction and its dependencies do.

- `occlusion_study`: hide a region or a named body part, compare pose, heatmap peak and dependency map.
- `symmetric_study`: hide a limb keypoint and measure how much of its dependency moves to the mirror joint.

Hiding (regions, body parts, fills) is `tpexplain.analysis.hiding`; the occlusion-sensitivity sweep is
`tpexplain.analysis.sensitivity`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import cv2
import matplotlib.pyplot as plt
import numpy as np

from .. import figures
from ..explanation import Explanation
from ..io import as_rgb
from ..keypoints import keypoint_index
from .depth import default_radius, person_size
from .hiding import check_fill, describe_region, hide, part_joints, part_region, region_mask
from .regions import REGIONS, region_masses
from .results import Result

log = logging.getLogger(__name__)


@dataclass
class OcclusionStudy(Result):
    """One keypoint before and after hiding a region: pose, heatmap peak, dependency and its regions.

    `to_json` writes `summary()`; `to_csv` one row per body region: region, mass_before, mass_after, shift.
    """

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
    symmetric: dict | None = None        # the mirror-joint numbers, when made by `symmetric_study`
    at: str = "pred"                     # the joint hidden and queried: predicted, or ground truth ("gt")

    def summary(self) -> dict:
        keys = ("keypoint", "hidden", "fill", "displacement_px", "displacement_norm", "peak_before", "peak_after",
                "peak_drop", "value_at_clean_peak_after", "masses_before", "masses_after", "displacements_px")
        out = {k: getattr(self, k) for k in keys}
        out["mass_shift"] = {r: self.masses_after[r] - self.masses_before[r] for r in REGIONS}
        out["hidden_pixels"] = int(self.mask.sum())
        out["model"] = self.before.model_name
        out["query_before"] = self.before.query_info(self.keypoint, at=self.at)   # the token the maps use
        out["query_after"] = self.after.query_info(self.keypoint, at=self.at)
        if self.at == "gt":
            out["at"] = "gt"
        if self.symmetric is not None:
            out["symmetric"] = dict(self.symmetric)
        return out

    def csv_rows(self) -> tuple[list[str], list[list]]:
        rows = []
        for r in REGIONS:
            b, a = self.masses_before[r], self.masses_after[r]
            rows.append([r, f"{b:.6g}", f"{a:.6g}", f"{a - b:.6g}"])
        return ["region", "mass_before", "mass_after", "shift"], rows

    def table(self) -> str:
        at = " at its ground-truth position" if self.at == "gt" else ""
        lines = [f"hide {self.hidden}{at} ({self.fill}) → {self.keypoint}",
                 f"displacement {self.displacement_px:.1f} px = {self.displacement_norm:.3f} person sizes",
                 f"heatmap peak {self.peak_before:.4f} → {self.peak_after:.4f} (drop {self.peak_drop:+.4f}); "
                 f"at the clean peak {self.value_at_clean_peak_after:.4f}",
                 f"{'region':<11} {'before':>7} {'after':>7} {'shift':>7}"]
        for r in REGIONS:
            b, a = self.masses_before[r], self.masses_after[r]
            lines.append(f"{r:<11} {b:>7.3f} {a:>7.3f} {a - b:>+7.3f}")
        return "\n".join(lines)

    def figure(self, scale: str = "shared"):
        """Before (top) and after (bottom): pose (with the ground truth when known), the keypoint's heatmap, its
        dependency map; region masses. `scale` "shared" (default) draws before and after on one colour range per
        kind, so a drop shows as a change of colour; "panel": each its own; "absolute": heatmaps and attention
        on 0..1. The dependency bars mark 1/N."""
        figures.check_scale(scale)
        fig = plt.figure(figsize=(11.5, 8.2))     # panels close together; a spacer column keeps the bars' axis clear
        grid = fig.add_gridspec(2, 5, width_ratios=[1, 1, 1, 0.2, 1.3], wspace=0.25, left=0.03, right=0.97, top=0.86,
                                bottom=0.1)
        k = self.before.keypoint(self.keypoint)
        mask_crop = cv2.warpAffine(self.mask.astype(np.float32), self.before.crop.to_crop,
                                   self.before.input_size[::-1], flags=cv2.INTER_NEAREST)
        pair = (self.before, self.after)
        heats = [cv2.resize(ex.heatmaps[k].float().numpy(), ex.input_size[::-1], interpolation=cv2.INTER_LINEAR)
                 for ex in pair]
        deps = [ex.dependency(k, at=self.at) for ex in pair]
        heat_lims = figures.limits(heats, scale)
        dep_lims = figures.limits([d.values for d in deps], scale)
        for row, (ex, label) in enumerate(zip(pair, ("before", "after"))):
            axes = [fig.add_subplot(grid[row, c]) for c in range(3)]
            ex.pose_panel(axes[0], title=f"{label}: prediction", legend=row == 1)
            im = figures.overlay(axes[1], ex.crop_image, heats[row], tuple(ex.keypoints_crop[k]), colorbar=False,
                                 vmin=heat_lims[row][0], vmax=heat_lims[row][1],
                                 title=f"{label}: {self.keypoint} heatmap\npeak {float(ex.heatmaps[k].max()):.3f}")
            figures.add_colorbar(im, axes[1])
            deps[row].plot(axes[2], vmin=dep_lims[row][0], vmax=dep_lims[row][1],
                           title=f"{label}: {self.keypoint} dependency\nlayer {deps[row].layer + 1}"
                           + (", queried at the ground truth" if self.at == "gt" else ""))
            if row == 1 and mask_crop.any():
                for ax in axes:
                    ax.contour(mask_crop, levels=[0.5], colors="white", linewidths=1.0, linestyles="--")
        ax = fig.add_subplot(grid[:, 4])
        xs = np.arange(len(REGIONS))
        ax.bar(xs - 0.2, [self.masses_before[r] for r in REGIONS], 0.4, label="before")
        ax.bar(xs + 0.2, [self.masses_after[r] for r in REGIONS], 0.4, label="after")
        ax.set_xticks(xs, REGIONS, rotation=30, fontsize=8)
        ax.set_ylabel("share of dependency mass", fontsize=8)
        ax.legend(fontsize=8)
        ax.set_title(f"{self.keypoint}: displacement {self.displacement_px:.1f}px "
                     f"({self.displacement_norm:.2f} person)\npeak drop {self.peak_drop:+.3f}", fontsize=9)
        at = " at its ground truth" if self.at == "gt" else ""
        fig.suptitle(f"{self.before.caption}\nhide {self.hidden}{at} ({self.fill} fill), keypoint {self.keypoint}; "
                     f"hidden area dashed white; colour scale: {scale}", fontsize=10)
        return fig


def occlusion_study(pose_model, image, keypoint: str | int, bbox: tuple | None = None,
                    region: tuple | np.ndarray | None = None, part: str | None = None,
                    fill: str = "mean", seed: int = 0, flip: bool = True, ground_truth: np.ndarray | None = None,
                    at: str = "pred") -> OcclusionStudy:
    """Hide `region` (x, y, w, h image pixels, or a mask) or a body `part` (default: the keypoint itself)
    and compare `keypoint`'s prediction, heatmap peak and dependency map before and after.

    `ground_truth` (K, 3) is the person's labelled pose (image pixels, COCO's x, y, v), kept on both
    explanations; `at` "gt" places the hidden part and the dependency query at the ground-truth joints
    instead of the predicted ones.

    Dependency masses are sorted into the regions of the clean pose (`region_masks`; with `at` "gt", of the
    ground-truth pose where labelled), before and after.
    """
    check_fill(fill)
    if region is not None and part is not None:
        raise ValueError("give a region or a part, not both")
    img = as_rgb(image)
    k = keypoint_index(keypoint, pose_model.keypoint_names)
    name = pose_model.keypoint_names[k]
    if region is None:
        part = name if part is None else part
        part_joints(part, pose_model.keypoint_set)          # fail on a bad name before any forward pass
    else:
        region_mask(img.shape, region)
    before = pose_model.explain(img, bbox=bbox, flip=flip)
    before.ground_truth = ground_truth
    if at == "gt":
        before.query(k, at="gt")                # no ground truth, or the joint unlabelled: one line, here
    if region is None:
        mask, hidden = part_region(before, part, at), part_joints(part, before.keypoint_set)[0]
    else:
        mask, hidden = region_mask(img.shape, region), describe_region(region)
    after = pose_model.explain(hide(img, mask, fill, seed), bbox=bbox, flip=flip)
    after.ground_truth = ground_truth

    disp = np.hypot(*(after.keypoints[:, :2] - before.keypoints[:, :2]).T)
    disp_crop = float(np.hypot(*(after.keypoints_crop[k] - before.keypoints_crop[k])))
    hb, ha = before.heatmaps[k], after.heatmaps[k]
    clean_peak = int(hb.flatten().argmax())
    return OcclusionStudy(
        keypoint=name, hidden=hidden, fill=fill, mask=mask, before=before, after=after,
        displacement_px=float(disp[k]), displacement_norm=disp_crop / person_size(before),
        peak_before=float(hb.max()), peak_after=float(ha.max()), peak_drop=float(hb.max() - ha.max()),
        value_at_clean_peak_after=float(ha.flatten()[clean_peak]),
        masses_before=_masses(regions_pose(before, at), before, k, at),
        masses_after=_masses(regions_pose(before, at), after, k, at),
        displacements_px={before.keypoint_names[i]: float(d) for i, d in enumerate(disp)}, at=at)


def regions_pose(ex: Explanation, at: str = "pred") -> Explanation:
    """The explanation whose pose places the body regions: itself, or with `at` "gt" a copy whose labelled
    joints are at their ground-truth positions (the predicted ones kept for unlabelled joints)."""
    gt = ex.ground_truth_at("crop") if at == "gt" else None
    if gt is None:
        return ex
    kp = np.array(ex.keypoints_crop, dtype=np.float64)
    labelled = gt[:, 2] > 0
    kp[labelled, :2] = gt[labelled, :2]
    return replace(ex, keypoints_crop=kp)


def _mirror_overlap(ex: Explanation, k: int, mirror: int, at: str) -> bool:
    """Whether k's own disc and its mirror joint's overlap (within twice the region radius): the mirror's mass
    near both then counts as own. Warned: with the prediction, often a collapse onto the mirror joint."""
    kp = np.asarray(ex.keypoints_crop, dtype=np.float64)
    d, r = float(np.hypot(*(kp[k, :2] - kp[mirror, :2]))), default_radius(ex)
    if d >= 2 * r:
        return False
    names, pose = ex.keypoint_names, "ground-truth" if at == "gt" else "predicted"
    log.warning(f"own and mirror regions overlap: the {pose} {names[k]} and {names[mirror]} are {d:.0f} px apart "
                f"in the crop, under twice the region radius ({r:.0f} px); mass near both counts as own"
                + ("" if at == "gt" else " (a collapse onto the mirror joint? with --coco, try --at gt)"))
    return True


def _masses(clean: Explanation, ex: Explanation, k: int, at: str = "pred") -> dict[str, float]:
    """k's last-layer dependency mass per body region of the clean pose (nan for keypoints without a
    known set, which have no skeleton to draw the regions from)."""
    if not clean.keypoint_set.skeleton:
        return {r: float("nan") for r in REGIONS}
    return region_masses(clean, ex.dependency(k, at=at).values, k)


def symmetric_study(pose_model, image, keypoint: str | int, bbox: tuple | None = None, fill: str = "mean",
                    seed: int = 0, flip: bool = True, ground_truth: np.ndarray | None = None,
                    at: str = "pred") -> dict:
    """Hide a keypoint that has a mirror joint (l_ankle ↔ r_ankle) and measure how much of its dependency
    mass moves onto the mirror joint (and onto the adjacent joints).

    With `at` "gt" the regions are placed from the ground truth; own and mirror regions that overlap are
    warned about (`regions_overlap`). Returns mirror, mirror_mass_before/after, mirror_shift, adjacent_mass_before/after, adjacent_shift,
    displacement_px/norm, peak_drop, the region masses, and the `study` (an `OcclusionStudy`, for figures;
    its summary and JSON carry these numbers under "symmetric").
    """
    k = keypoint_index(keypoint, pose_model.keypoint_names)
    mirror = pose_model.keypoint_set.flip_index(k)
    names = pose_model.keypoint_names
    if mirror == k:
        raise ValueError(f"'{names[k]}' has no mirror joint; use a left or right keypoint")
    s = occlusion_study(pose_model, image, k, bbox=bbox, part=names[k], fill=fill, seed=seed, flip=flip,
                        ground_truth=ground_truth, at=at)
    b, a = s.masses_before, s.masses_after
    overlap = _mirror_overlap(regions_pose(s.before, at), k, mirror, at)
    s.symmetric = {"keypoint": names[k], "mirror": names[mirror], "fill": fill,
                   "regions_from": "ground truth" if at == "gt" else "prediction", "regions_overlap": overlap,
                   "mirror_mass_before": b["symmetric"], "mirror_mass_after": a["symmetric"],
                   "mirror_shift": a["symmetric"] - b["symmetric"],
                   "adjacent_mass_before": b["adjacent"], "adjacent_mass_after": a["adjacent"],
                   "adjacent_shift": a["adjacent"] - b["adjacent"],
                   "displacement_px": s.displacement_px, "displacement_norm": s.displacement_norm,
                   "peak_drop": s.peak_drop}
    return {**s.symmetric, "masses_before": b, "masses_after": a, "study": s}
