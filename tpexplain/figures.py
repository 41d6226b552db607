"""Matplotlib drawing shared by every figure: the crop, the skeleton, a map overlay, a colour bar."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .keypoints import COCO, MPII, KeypointSet, keypoint_set

CMAP = "nipy_spectral"   # the official TransPose visualisation's colour map
LEFT, RIGHT, CENTER = "#1f77ff", "#ff7f0e", "#2ca02c"


def side_colour(name: str) -> str:
    """Left joints blue, right joints orange, midline green."""
    return LEFT if name.startswith("l_") else RIGHT if name.startswith("r_") else CENTER


def default_keypoint_set(count: int) -> KeypointSet:
    """COCO for 17 keypoints, MPII for 16; otherwise unnamed keypoints without a skeleton."""
    known = {len(COCO): COCO, len(MPII): MPII}
    return known.get(count) or keypoint_set(tuple(f"kp{i}" for i in range(count)))


def draw_skeleton(ax, keypoints: np.ndarray, min_score: float = 0.0, size: float = 12,
                  keypoints_set: KeypointSet | None = None) -> None:
    """Limbs and joints of one person; keypoints (K, 2|3) in the axes' pixel coordinates.

    The skeleton and sides come from `keypoints_set` (default: chosen by the number of keypoints).
    """
    kp = np.asarray(keypoints)
    ks = keypoints_set or default_keypoint_set(len(kp))
    ok = kp[:, 2] > min_score if kp.shape[1] > 2 else np.ones(len(kp), bool)
    for a, b in ks.skeleton:
        if a < len(kp) and b < len(kp) and ok[a] and ok[b]:
            # a limb takes the colour of its higher-numbered joint (COCO and MPII list limbs outward)
            colour = side_colour(ks.names[max(a, b)])
            ax.plot([kp[a, 0], kp[b, 0]], [kp[a, 1], kp[b, 1]], color=colour, lw=1.5, alpha=0.9)
    for i in range(len(kp)):
        if ok[i]:
            ax.scatter(kp[i, 0], kp[i, 1], s=size, c=side_colour(ks.names[i]), edgecolors="white",
                       linewidths=0.5, zorder=3)



def overlay(ax, background: np.ndarray, values: np.ndarray, query: tuple[float, float] | None = None,
            alpha: float = 0.7, vmax: float | None = None, colorbar: bool = True, title: str | None = None):
    """A map (same size as `background`) over the image, the query as a white star."""
    ax.imshow(background)
    # per-panel min-max scaling, as the official visualisation; the colour bar keeps the real values
    lo, hi = float(values.min()), float(values.max()) if vmax is None else vmax
    im = ax.imshow(values, cmap=CMAP, alpha=alpha, vmin=lo, vmax=hi if hi > lo else lo + 1e-12)
    if query is not None:
        ax.scatter([query[0]], [query[1]], marker="*", s=140, c="white", edgecolors="black", linewidths=0.6,
                   zorder=4)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        cb.ax.tick_params(labelsize=6)
    return im


def pose_panel(ax, background: np.ndarray, keypoints: np.ndarray, title: str = "prediction",
               keypoints_set: KeypointSet | None = None) -> None:
    """The image with the predicted skeleton."""
    ax.imshow(background)
    draw_skeleton(ax, keypoints, keypoints_set=keypoints_set)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def write_figure(fig, path: str | Path, fmt: str, dpi: int = 150) -> None:
    """`fig.savefig` in format `fmt`, marked as written by tpexplain (see tpexplain.io.made_by_tpexplain)."""
    from .io import savefig_kwargs
    fig.savefig(path, dpi=dpi, bbox_inches="tight", format=fmt, **savefig_kwargs(fmt))


def save_figure(fig, path: str | Path, dpi: int = 150, force: bool = False, inputs=()) -> Path:
    """Write by the output policy (tpexplain.io.check_output: the extension is the format; an existing
    file is replaced only if tpexplain wrote it, or with `force`; never one of `inputs`), atomically (a
    failed save leaves the previous file as it was), then close the figure."""
    from .io import atomic_path, check_output
    path = Path(path)
    try:
        check_output(path, inputs, kind="figure", force=force)
        with atomic_path(path) as tmp:
            write_figure(fig, tmp, path.suffix.lstrip(".").lower(), dpi)
    finally:
        plt.close(fig)
    return path


class Displayable:
    """Base of every result that draws itself: `figure()` is the one method a subclass provides;
    `show()` returns it, `save(path)` writes it by the output policy, Jupyter displays it inline."""

    def figure(self, *args, **kwargs):
        raise NotImplementedError

    def show(self, *args, **kwargs):
        return self.figure(*args, **kwargs)

    def save(self, path: str | Path, dpi: int = 150, force: bool = False) -> Path:
        """The figure written to `path` (.png, .pdf, .svg, .jpg): an existing file is replaced only if
        tpexplain wrote it, or with `force`."""
        return save_figure(self.figure(), path, dpi, force=force)

    def _repr_png_(self) -> bytes:
        fig = self.figure()
        try:
            return figure_png(fig)
        finally:
            plt.close(fig)
