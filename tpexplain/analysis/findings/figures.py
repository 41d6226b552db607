"""The findings report's figures, one function per figure, each returning a matplotlib figure."""
from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np

from ... import figures as tpfigures
from ...explanation import Explanation
from ...keypoints import COCO_KEYPOINTS, PCK_ALPHA
from ..regions import REGIONS
from .claims import Claim, map_statistics
from .criteria import AGREEMENT_RHO_MIN, CONCENTRATION_MIN, OCCLUDED_PCK_MIN, PCK_MIN, SPECIFIC_R_MAX, SRI_MIN
from .measure import THUMB


def finite_mean(xs) -> float:
    """Mean of the finite values (None and nan left out); nan when there are none."""
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def finite_median(xs) -> float:
    """Median of the finite values (None and nan left out); nan when there are none."""
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.median(xs)) if xs else float("nan")


def region_table(q: list[dict]) -> dict:
    """Per keypoint type, the mean share of the last layer's dependency on each body region."""
    return {COCO_KEYPOINTS[k]: {r: finite_mean([x["masses"][r] for x in q if x["k"] == k]) for r in REGIONS}
            for k in range(17)}

def _bar_line(ax, threshold: float, label: str) -> None:
    ax.axhline(threshold, color="black", ls="--", lw=0.8, label=label)


def fig_activation(q: list[dict]):
    """PCK by keypoint type, visible and occluded (claim 1a)."""
    fig, ax = plt.subplots(figsize=(8, 3))
    x = np.arange(17)
    for off, v, label in ((-0.2, 2, "visible (v=2)"), (0.2, 1, "occluded (v=1)")):
        ys = [finite_mean([float(r["hit"]) for r in q if r["k"] == k and r["v"] == v]) for k in range(17)]
        ax.bar(x + off, np.nan_to_num(ys), 0.4, label=label)
    _bar_line(ax, PCK_MIN, f"criterion {PCK_MIN:g}")
    ax.set_xticks(x, COCO_KEYPOINTS, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"PCK@{PCK_ALPHA:g}", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("heatmap peaks on ground-truth keypoints, by type", fontsize=9)
    return fig


def fig_person(q: list[dict], ex: Explanation | None):
    """Concentration on the person over the queries, beside one example map (claim 1b)."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), gridspec_kw={"width_ratios": [2, 1]})
    c = [r["concentration"] for r in q if r["concentration"] is not None]
    axes[0].hist(c, bins=30, range=(-1, 1), color="#4477aa")
    axes[0].axvline(CONCENTRATION_MIN, color="black", ls="--", lw=0.8, label=f"criterion {CONCENTRATION_MIN:g}")
    axes[0].axvline(finite_median(c), color="#cc3311", lw=1.2, label=f"median {finite_median(c):.2f}")
    axes[0].set_xlabel("concentration on the person (0 = uniform, 1 = all on the person)", fontsize=8)
    axes[0].legend(fontsize=7)
    labelled = [] if ex is None or ex.ground_truth is None else np.flatnonzero(ex.ground_truth[:, 2] > 0)
    if len(labelled):
        ex.dependency(int(labelled[0]), at="gt").plot(axes[1], colorbar=False)
    else:
        axes[1].set_axis_off()
    return fig


def fig_regions(q: list[dict]):
    """Share of the last-layer dependency on each body region, by keypoint type (claim 2a)."""
    table = region_table(q)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = np.arange(17)
    bottom = np.zeros(17)
    colors = ("#cc3311", "#ee7733", "#009988", "#33bbee", "#bbbbbb", "#555555")
    for r, col in zip(REGIONS, colors):
        ys = np.nan_to_num([table[n][r] for n in COCO_KEYPOINTS])
        ax.bar(x, ys, 0.7, bottom=bottom, label=r, color=col)
        bottom += ys
    ax.set_xticks(x, COCO_KEYPOINTS, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of last-layer dependency", fontsize=8)
    ax.legend(fontsize=6, ncol=6, loc="upper center", bbox_to_anchor=(0.5, 1.15))
    return fig


def fig_symmetric(by_type: dict):
    """Mirror-joint and neighbour reliance index by keypoint type (claim 2b)."""
    fig, ax = plt.subplots(figsize=(8, 3))
    x = np.arange(17)
    ax.bar(x - 0.2, [by_type[n]["mirror_reliance"] for n in COCO_KEYPOINTS], 0.4, label="mirror joint",
           color="#ee7733")
    ax.bar(x + 0.2, [by_type[n]["neighbour_reliance"] for n in COCO_KEYPOINTS], 0.4, label="neighbours",
           color="#009988")
    _bar_line(ax, 1.0, "distance alone = 1")
    ax.axhline(SRI_MIN, color="#cc3311", ls=":", lw=0.8, label=f"criterion {SRI_MIN:g}")
    ax.set_xticks(x, COCO_KEYPOINTS, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("observed ÷ distance-matched mass", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title("reliance index per keypoint type (last layer)", fontsize=9)
    return fig


def fig_depth(q: list[dict], num_layers: int):
    """Attention distance and entropy by layer: quartiles, median and mean (claims 3a, 3b)."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    layers = np.arange(1, num_layers + 1)
    for ax, key, label in ((axes[0], "distance_body", "mean attention distance (person sizes)"),
                           (axes[1], "entropy", "attention entropy (nats)")):
        vals = np.array([r[key] for r in q]) if q else np.zeros((0, num_layers))
        if len(vals):
            lo, mid, hi = np.percentile(vals, [25, 50, 75], axis=0)
            ax.fill_between(layers, lo, hi, alpha=0.25, color="#4477aa", label="quartiles")
            ax.plot(layers, mid, "o-", color="#4477aa", label="median")
            ax.plot(layers, vals.mean(0), "s--", color="#cc3311", ms=3, label="mean")
        ax.set_xticks(layers)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    return fig


def fig_occlusion(q: list[dict], studies: list[dict]):
    """PCK of visible vs occluded keypoints, and region shares before/after hiding (claims 4a, 4b)."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    vals = [finite_mean([float(r["hit"]) for r in q if r["v"] == v]) for v in (2, 1)]
    axes[0].bar([0, 1], np.nan_to_num(vals), color=["#4477aa", "#ee7733"])
    axes[0].set_xticks([0, 1], [f"visible ({sum(r['v'] == 2 for r in q)})",
                                f"occluded ({sum(r['v'] == 1 for r in q)})"], fontsize=8)
    _bar_line(axes[0], OCCLUDED_PCK_MIN, f"criterion {OCCLUDED_PCK_MIN:g}")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel(f"PCK@{PCK_ALPHA:g}", fontsize=8)
    axes[0].legend(fontsize=7)
    x = np.arange(len(REGIONS))
    before = [finite_mean([s["masses_before"][r] for s in studies]) for r in REGIONS]
    after = [finite_mean([s["masses_after"][r] for s in studies]) for r in REGIONS]
    axes[1].bar(x - 0.2, np.nan_to_num(before), 0.4, label="before hiding")
    axes[1].bar(x + 0.2, np.nan_to_num(after), 0.4, label="after hiding")
    axes[1].set_xticks(x, REGIONS, rotation=30, fontsize=7)
    axes[1].set_title(f"dependency of a hidden limb joint ({len(studies)} cases)", fontsize=9)
    axes[1].legend(fontsize=7)
    return fig


def fig_mean_maps(records: list[dict]):
    """Mean map per keypoint type on the mean crop, and map-to-mean correlations (claims 5a, 5b)."""
    fig, axes = plt.subplots(3, 7, figsize=(12, 7.4))
    cells = axes.reshape(-1)
    done = [r for r in records if "maps" in r]
    h, w = done[0]["input_size"] if done else (256, 192)
    grid = done[0]["grid"] if done else (1, 1)
    maps = {}
    points: dict[int, list] = {}
    for i, r in enumerate(done):
        for k, m in r["maps"].items():
            maps.setdefault(int(k), {})[i] = np.asarray(m, np.float32).reshape(grid)
            points.setdefault(int(k), []).append(r["query_crop"][k])
    stats = map_statistics(maps)
    background = None
    if done:
        thumbs = np.mean([np.asarray(r["thumb"], np.float64) for r in done], axis=0)
        background = cv2.resize(thumbs.clip(0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    for k in range(17):
        ax = cells[k]
        ax.set_axis_off()
        if k not in stats["sums"] or background is None:
            ax.set_title(f"{COCO_KEYPOINTS[k]} (too few)", fontsize=7)
            continue
        mean = stats["sums"][k] / stats["counts"][k]
        up = cv2.resize(mean.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        q = np.mean(points[k], axis=0)
        tpfigures.overlay(ax, background, up, (q[0], q[1]), colorbar=False,
                          title=f"{COCO_KEYPOINTS[k]} · n={stats['counts'][k]}\n"
                                f"spread {finite_mean(stats['spread'][k]):.2f}")
        ax.set_xlim(-0.5, w - 0.5)      # a mean query off the crop must not shrink the panel
        ax.set_ylim(h - 0.5, -0.5)
    ax = fig.add_subplot(3, 7, (18, 21))
    for c in cells[17:]:
        c.set_axis_off()
    types = [k for k in range(17) if k in stats["r_own"]]
    ax.bar(np.arange(len(types)) - 0.2, [finite_mean(stats["r_own"][k]) for k in types], 0.4,
           label="r with own type's mean")
    ax.bar(np.arange(len(types)) + 0.2, [finite_mean(stats["r_other"][k]) for k in types], 0.4,
           label="r with other types'")
    ax.axhline(SPECIFIC_R_MAX, color="black", ls="--", lw=0.8)
    ax.set_xticks(np.arange(len(types)), [COCO_KEYPOINTS[k] for k in types], rotation=60, fontsize=6)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    fig.suptitle("mean last-layer dependency map per keypoint type over the set (on the mean crop); "
                 "spread = mean total variation of individual maps to the mean", fontsize=9)
    return fig


def fig_agreement(rhos: list[dict]):
    """Histograms of attention-vs-occlusion rank correlations (agreement sanity check)."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for key, col in (("dependency", "#4477aa"), ("rollout", "#ee7733"), ("first_layer", "#999999")):
        vals = [r[key] for r in rhos if np.isfinite(r[key])]
        ax.hist(vals, bins=20, range=(-1, 1), alpha=0.55, color=col, label=f"{key} (median {finite_median(vals):.2f})")
    ax.axvline(AGREEMENT_RHO_MIN, color="black", ls="--", lw=0.8, label=f"criterion {AGREEMENT_RHO_MIN:g}")
    ax.set_xlabel("Spearman rho, attention vs occlusion sensitivity", fontsize=8)
    ax.legend(fontsize=7)
    return fig


def fig_baselines(claims: list[Claim]):
    """Each claim's statistic with its interval on the model and on the two baselines, beside the criterion."""
    n = len(claims)
    cols = 4
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.3 * rows), squeeze=False)
    for ax, c in zip(axes.flat, claims):
        entries = [("model", c.value, c.interval)] + [(name, b.value, (b.low, b.high))
                                                      for name, b in c.baselines.items()]
        for y, (name, value, (lo, hi)) in enumerate(entries):
            if value is None or not np.isfinite(value):
                continue
            color = "#cc3311" if name == "model" else "#777777"
            ax.plot([lo, hi], [y, y], color=color, lw=2)
            ax.plot([value], [y], "o", color=color, ms=5)
        if c.threshold is not None:
            ax.axvline(c.threshold, color="black", ls="--", lw=0.8)
        ax.set_yticks(range(len(entries)), [e[0] for e in entries], fontsize=8)
        ax.set_ylim(-0.6, len(entries) - 0.4)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=8)
        ax.set_title(f"{c.id}\n{c.verdict}", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.suptitle("statistic and 95% bootstrap interval: model (red) and null baselines (grey); dashed: criterion",
                 fontsize=10)
    fig.tight_layout()
    return fig


def save(fig, path: Path, dpi: int = 100) -> None:
    """Write `fig` as a PNG and close it."""
    tpfigures.save_figure(fig, path, dpi=dpi)

