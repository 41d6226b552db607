"""Matplotlib drawing shared by every figure: the crop, the skeleton, a map overlay, colour scales, sizes."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .keypoints import COCO, MPII, KeypointSet, keypoint_set

CMAP = "nipy_spectral"   # the official TransPose visualisation's colour map
CMAP_SIGNED = "RdBu_r"   # signed quantities (occlusion drops): red up, blue down, white at 0
LEFT, RIGHT, CENTER = "#1f77ff", "#ff7f0e", "#2ca02c"
SCALES = ("panel", "shared", "absolute")
# Keypoints scored below this are drawn hollow and their limbs faded: the official in_vis_thre (0.2), the score
# below which the official evaluation leaves a keypoint out of the person's score.
CONFIDENCE = 0.2
MAX_SIDE_PX = 3000       # a saved figure's longest side: its dpi is lowered to fit
MAX_AREA_PX = 4.5e6      # and its area
MAX_FIGURE_IN = 19.5     # figures are laid out within this many inches a side (3000 px at 150 dpi)
MOSAIC_DPI = 150         # the resolution a mosaic's image is composed at


def side_colour(name: str) -> str:
    """Left joints blue, right joints orange, midline green."""
    return LEFT if name.startswith("l_") else RIGHT if name.startswith("r_") else CENTER


def default_keypoint_set(count: int) -> KeypointSet:
    """COCO for 17 keypoints, MPII for 16; otherwise unnamed keypoints without a skeleton."""
    known = {len(COCO): COCO, len(MPII): MPII}
    return known.get(count) or keypoint_set(tuple(f"kp{i}" for i in range(count)))


# ------------------------------------------------------------------------------------------- skeletons

def draw_skeleton(ax, keypoints: np.ndarray, min_score: float = 0.0, size: float = 12,
                  keypoints_set: KeypointSet | None = None, confidence: float | None = CONFIDENCE,
                  ground_truth: bool = False) -> None:
    """Limbs and joints of one person; keypoints (K, 2|3) in the axes' pixel coordinates.

    The skeleton and sides come from `keypoints_set` (default: chosen by the number of keypoints). A
    prediction's joints scored below `confidence` are hollow and their limbs faded and thin. With
    `ground_truth`, the third column is COCO's visibility (0: unlabelled, not drawn) and the person is drawn
    dashed with white-filled squares, to be told apart from a prediction. A few collections per person,
    not an artist per limb: figures with many people stay fast.
    """
    from matplotlib.collections import LineCollection
    kp = np.asarray(keypoints, dtype=np.float64)
    ks = keypoints_set or default_keypoint_set(len(kp))
    scored = kp.shape[1] > 2
    ok = kp[:, 2] > min_score if scored else np.ones(len(kp), bool)
    confident = kp[:, 2] >= confidence if scored and confidence is not None and not ground_truth else ok
    # a limb takes the colour of its higher-numbered joint (COCO and MPII list limbs outward)
    limbs = [(a, b) for a, b in ks.skeleton if a < len(kp) and b < len(kp) and ok[a] and ok[b]]
    segments = [kp[[a, b], :2] for a, b in limbs]
    limb_colours = [side_colour(ks.names[max(a, b)]) for a, b in limbs]
    if ground_truth and limbs:    # a white under-stroke keeps the dashes visible on any background
        ax.add_collection(LineCollection(segments, colors="white", linewidths=2.4, alpha=0.8, zorder=2))
        ax.add_collection(LineCollection(segments, colors=limb_colours, linewidths=1.3, linestyles=(0, (3, 2)),
                                         zorder=2.1))
    elif limbs:
        sure = np.array([confident[a] and confident[b] for a, b in limbs])
        rgba = colors.to_rgba_array(limb_colours)
        rgba[:, 3] = np.where(sure, 0.9, 0.4)
        ax.add_collection(LineCollection(segments, colors=rgba, linewidths=np.where(sure, 1.5, 0.8), zorder=2.1))
    joint_colours = np.array([side_colour(n) for n in ks.names[:len(kp)]])
    if ground_truth:
        ax.scatter(kp[ok, 0], kp[ok, 1], s=size, marker="s", c="white", edgecolors=joint_colours[ok],
                   linewidths=1.0, zorder=3)
        return
    filled, hollow = ok & confident, ok & ~confident
    if filled.any():
        ax.scatter(kp[filled, 0], kp[filled, 1], s=size, c=joint_colours[filled], edgecolors="white",
                   linewidths=0.5, zorder=3)
    if hollow.any():
        ax.scatter(kp[hollow, 0], kp[hollow, 1], s=size, facecolors="none", edgecolors=joint_colours[hollow],
                   linewidths=0.9, zorder=3)


def legend_handles(ground_truth: bool = False, box: bool = False, confidence: float | None = CONFIDENCE,
                   query: bool = False) -> list:
    """Legend entries for the skeleton (left/right/midline colours, confident/unsure joints, ground truth,
    person box, query point)."""
    handles = [Line2D([], [], color=LEFT, lw=1.5, marker="o", ms=4, label="left"),
               Line2D([], [], color=RIGHT, lw=1.5, marker="o", ms=4, label="right"),
               Line2D([], [], color=CENTER, lw=1.5, marker="o", ms=4, label="midline")]
    if confidence is not None:
        handles.append(Line2D([], [], ls="", marker="o", ms=4, mfc="none", mec="grey",
                              label=f"score < {confidence:g}"))
    if ground_truth:
        handles.append(Line2D([], [], color="grey", lw=1.3, ls=(0, (3, 2)), marker="s", ms=4, mfc="white",
                              label="ground truth"))
    if box:
        handles.append(Line2D([], [], color="yellow", lw=1.2, label="person box"))
    if query:
        handles.append(Line2D([], [], ls="", marker="*", ms=8, mfc="white", mec="black", label="query"))
    return handles


def skeleton_legend(target, ground_truth: bool = False, box: bool = False, confidence: float | None = CONFIDENCE,
                    query: bool = False, **kwargs):
    """The skeleton legend on an axes (below it) or a figure (along its bottom edge); outside the data."""
    handles = legend_handles(ground_truth, box, confidence, query)
    opts = {"fontsize": 6, "frameon": False, "handlelength": 1.6, "columnspacing": 0.9}
    if hasattr(target, "transAxes"):
        opts.update(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3)
    else:
        opts.update(loc="lower center", ncol=len(handles))
    opts.update(kwargs)
    legend = target.legend(handles=handles, **opts)
    legend.set_gid("skeleton-legend")
    return legend


def marker_legend(ax, at: str | None = "pred", other: str | None = None, **kwargs):
    """A map panel's markers, below `ax`: the star (the keypoint queried at its prediction or ground truth,
    `at`; None: a point), and `other` "s" (the ground-truth joint) or "o" (the prediction) when drawn."""
    star = "queried point" if at is None else f"queried keypoint ({'ground truth' if at == 'gt' else 'prediction'})"
    handles = [Line2D([], [], ls="", marker="*", ms=8, mfc="white", mec="black", label=star)]
    if other:
        handles.append(Line2D([], [], ls="", marker=other, ms=4, mfc="white" if other == "s" else "none",
                              mec="black", label="ground-truth joint" if other == "s" else "prediction"))
    opts = {"fontsize": 6, "frameon": False, "handlelength": 1.2, "loc": "upper center", "bbox_to_anchor": (0.5, 0.0),
            "ncol": len(handles), **kwargs}
    legend = ax.legend(handles=handles, **opts)
    legend.set_gid("marker-legend")
    return legend


def draw_box(ax, box, colour: str = "yellow", ls="-", label: str | None = None) -> None:
    """A rectangle (x, y, w, h) in the axes' pixel coordinates."""
    x, y, w, h = (float(v) for v in box)
    ax.add_patch(Rectangle((x, y), w, h, fill=False, ec=colour, lw=1.2, ls=ls, zorder=2.5, label=label))


def draw_outline(ax, corners: np.ndarray, colour: str = "white") -> None:
    """A dotted closed polygon (the model's input crop on the original image)."""
    c = np.vstack([corners, corners[:1]])
    ax.plot(c[:, 0], c[:, 1], color=colour, lw=0.8, ls=":", zorder=2.4)


def pose_panel(ax, background: np.ndarray, keypoints: np.ndarray, title: str = "prediction",
               keypoints_set: KeypointSet | None = None, ground_truth: np.ndarray | None = None,
               box=None, outline: np.ndarray | None = None, legend: bool = False) -> None:
    """The image with the predicted skeleton (and the ground truth's, dashed; the person box; the crop)."""
    ax.imshow(background)
    h, w = background.shape[:2]
    if outline is not None:
        draw_outline(ax, outline)
    if box is not None:
        draw_box(ax, box)
    if ground_truth is not None:
        draw_skeleton(ax, ground_truth, keypoints_set=keypoints_set, ground_truth=True)
    draw_skeleton(ax, keypoints, keypoints_set=keypoints_set)
    ax.set_xlim(-0.5, w - 0.5)      # keypoints off the image must not shrink it
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    if legend:
        skeleton_legend(ax, ground_truth=ground_truth is not None, box=box is not None)


# ------------------------------------------------------------------------------------------- colour scales

def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown colour scale '{scale}'; use {', '.join(SCALES)}")
    return scale


def limits(maps: list[np.ndarray], scale: str = "panel", signed: bool = False) -> list[tuple[float, float]]:
    """(vmin, vmax) for each map: its own range ("panel"), one range for all of them from 0 (or their
    minimum, if negative) to their maximum ("shared": a flat map then looks flat), or the absolute range of
    the quantity ("absolute": 0..1 for attention; -1..1 for a signed quantity). Signed limits are symmetric
    about 0."""
    check_scale(scale)

    def one(lo: float, hi: float) -> tuple[float, float]:
        if signed:
            half = max(abs(lo), abs(hi), 1e-12)
            return -half, half
        return lo, hi if hi > lo else lo + 1e-12

    if scale == "absolute":
        return [(-1.0, 1.0) if signed else (0.0, 1.0)] * len(maps)
    ranges = [(float(np.nanmin(m)), float(np.nanmax(m))) for m in maps]
    if scale == "shared":
        shared = one(min([0.0] + [r[0] for r in ranges]), max(r[1] for r in ranges))
        return [shared] * len(maps)
    return [one(*r) for r in ranges]


def make_norm(lo: float, hi: float, signed: bool = False) -> colors.Normalize:
    """A linear colour norm; centred at 0 (a diverging scale) for signed quantities."""
    if signed:
        return colors.CenteredNorm(vcenter=0.0, halfrange=max(abs(lo), abs(hi), 1e-12))
    return colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-12)


def mark_uniform(cb, level: float, label: str = "1/N") -> None:
    """Mark `level` (the value of a uniform attention map, 1/N) on a colour bar: a white line with a dark
    core across the bar, named on the bar's outer side, by the tick labels (an arrow at the end if the bar's
    range does not reach it)."""
    lo, hi = cb.mappable.norm.vmin, cb.mappable.norm.vmax
    horizontal = cb.orientation == "horizontal"
    if lo <= level <= hi:
        line = (cb.ax.axvline if horizontal else cb.ax.axhline)(level, color="white", lw=2.2)
        (cb.ax.axvline if horizontal else cb.ax.axhline)(level, color="black", lw=0.9, ls=(0, (2, 1)))
        line.set_gid("uniform-level")
        at, text = level, label if horizontal else f"◂{label}"
    else:
        at, text = (lo, f"{label}={level:.2g}▾") if level < lo else (hi, f"{label}={level:.2g}▴")
    # a white box over whatever tick label it meets: the mark is read first, the tick next to it second
    box = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.9}
    if horizontal:
        cb.ax.annotate(text, xy=(at, 0.0), xycoords=("data", "axes fraction"), xytext=(0, -1),
                       textcoords="offset points", ha="center", va="top", fontsize=5.5, gid="uniform-label",
                       bbox=box, zorder=5, annotation_clip=False)
    else:
        cb.ax.annotate(text, xy=(1.0, at), xycoords=("axes fraction", "data"), xytext=(1.5, 0),
                       textcoords="offset points", ha="left", va="center", fontsize=5.5, gid="uniform-label",
                       bbox=box, zorder=5, annotation_clip=False)


def add_colorbar(im, ax, uniform: float | None = None, label: str | None = None, ticks: int | None = None,
                 **kwargs):
    """A colour bar for `im` (an image or a `ScalarMappable`) beside `ax` (an axes: as tall as its image;
    or a list of axes: beside them all), 1/N marked when `uniform` is given; `ticks` bounds the tick count."""
    if isinstance(ax, (list, tuple)):
        opts = {"fraction": 0.046, "pad": 0.02}
        opts.update(kwargs)
        cb = ax[0].figure.colorbar(im, ax=list(ax), **opts)
    else:
        from mpl_toolkits.axes_grid1 import make_axes_locatable
        divider = make_axes_locatable(ax)
        divider.set_anchor(ax.get_anchor())       # the map and its bar stay where the axes was anchored
        cax = divider.append_axes("right", size=kwargs.get("size", "5%"), pad=kwargs.get("pad", 0.04))
        cb = ax.figure.colorbar(im, cax=cax)
    cb.ax.tick_params(labelsize=6 if ticks is None else 5, length=2, pad=1)
    if ticks is not None:
        from matplotlib.ticker import MaxNLocator
        cb.locator = MaxNLocator(ticks)
        cb.update_ticks()
    if label:
        cb.set_label(label, fontsize=7)
    if uniform is not None:
        mark_uniform(cb, uniform)
    return cb


def overlay(ax, background: np.ndarray, values: np.ndarray, query: tuple[float, float] | None = None,
            alpha: float = 0.7, vmax: float | None = None, colorbar: bool = True, title: str | None = None,
            vmin: float | None = None, signed: bool = False, uniform: float | None = None, cmap: str | None = None,
            marker_size: float = 140, max_side: int = 1024, offset: tuple[float, float] = (0.0, 0.0)):
    """A map (same size as `background`; NaN pixels left clear) over the image, the query as a white star.

    By default the map is min-max scaled (as the official visualisation); `vmin`/`vmax` fix the limits
    (see `limits`). `signed` maps use a diverging colour map centred at 0; `uniform` marks 1/N on the bar.
    The overlay is composited in numpy at most `max_side` pixels a side (one image per panel: fast) and
    returned as a `ScalarMappable` carrying the colour norm. `offset`: the (x, y) pixel position of the
    background's corner, for a window of a larger image (the query is in the larger image's pixels).
    """
    from matplotlib.cm import ScalarMappable
    lo = float(np.nanmin(values)) if vmin is None else vmin
    hi = float(np.nanmax(values)) if vmax is None else vmax
    if signed and vmin is None and vmax is None:
        lo, hi = limits([values], "panel", signed=True)[0]
    norm, cmap = make_norm(lo, hi, signed), cmap or (CMAP_SIGNED if signed else CMAP)
    h, w = background.shape[:2]
    f = min(1.0, max_side / max(h, w))
    small = (max(1, round(w * f)), max(1, round(h * f)))
    bg = background if f == 1 else cv2.resize(background, small, interpolation=cv2.INTER_AREA)
    vals = np.asarray(values, np.float32)
    vals = vals if f == 1 else cv2.resize(vals, small, interpolation=cv2.INTER_AREA)
    x0, y0 = offset
    ax.imshow(blend(bg, vals, norm, cmap, alpha), extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5))
    im = ScalarMappable(norm, cmap)
    im.set_array(vals)
    if query is not None:
        ax.scatter([query[0]], [query[1]], marker="*", s=marker_size, c="white", edgecolors="black",
                   linewidths=0.6, zorder=4)
    ax.set_xlim(x0 - 0.5, x0 + w - 0.5)
    ax.set_ylim(y0 + h - 0.5, y0 - 0.5)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    if colorbar:
        add_colorbar(im, ax, uniform)
    return im


def blend(background: np.ndarray, values: np.ndarray, norm: colors.Normalize, cmap: str = CMAP,
          alpha: float = 0.7) -> np.ndarray:
    """The map coloured by `norm` and `cmap` (a 1024-colour table), laid over the background with opacity
    `alpha`, as one RGB uint8 image; NaN values leave the background clear."""
    lut = plt.get_cmap(cmap)(np.linspace(0.0, 1.0, 1024))[:, :3].astype(np.float32)
    finite = np.isfinite(values)
    scaled = np.asarray(norm(np.where(finite, values, 0.0)), dtype=np.float32)
    rgb = lut[np.clip(np.nan_to_num(scaled) * 1023 + 0.5, 0, 1023).astype(np.int32)]
    a = (alpha * finite)[..., None].astype(np.float32)
    bg = background if background.ndim == 3 else np.repeat(background[..., None], 3, axis=2)
    out = bg[..., :3].astype(np.float32) * (1 - a) + rgb * (255.0 * a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- mosaics

@dataclass
class Tile:
    """One panel of a mosaic: an RGB image (with a map over it, `values` coloured by `norm`), its title, its
    own colour bar (`bar`), markers and a skeleton, in the image's pixels."""

    image: np.ndarray
    title: str = ""
    norm: colors.Normalize | None = None     # the colours of `values`
    cmap: str = CMAP
    uniform: float | None = None             # 1/N, marked on the tile's colour bar
    values: np.ndarray | None = None         # a map over `image` (same size), blended once the tile is sized
    bar: bool = False                        # a colour bar beside the tile (per-panel scale)
    points: list = field(default_factory=list)   # (x, y, marker, size, face, edge)
    skeleton: np.ndarray | None = None
    ground_truth: np.ndarray | None = None
    keypoints_set: KeypointSet | None = None
    box: tuple | None = None
    outline: np.ndarray | None = None
    note: str = ""                           # a word across the tile ("not labelled"): an empty panel's reason


def mosaic(fig, rect, tiles: list[list[Tile | None]], size: tuple[int, int] = (192, 256), fontsize: float = 7,
           col_titles: list[str] | None = None, row_titles: list[str] | None = None):
    """Draw a grid of tiles as ONE image in one axes at `rect` (left, bottom, width, height in figure
    fractions): many small multiples in about the time of one panel. Every tile is fitted into `size`
    (w, h) pixels; a tile with a `bar` gets a thin colour bar (its limits as text, 1/N as a white line edged black).
    `col_titles`/`row_titles` head the columns and rows (instead of a title per tile). Returns the axes;
    `ax.tile_norms` lists the tiles' norms, row by row."""
    nrows, ncols = len(tiles), max(len(r) for r in tiles)
    bars = any(t is not None and t.bar for row in tiles for t in row)
    titled = any(t is not None and t.title for row in tiles for t in row)
    heads = (col_titles is not None, row_titles is not None)
    cw, ch, top, left = _layout(size, bars, titled, *heads)
    # no more canvas pixels than the axes gets at MOSAIC_DPI: the image is resampled once, not at every draw
    fw, fh = fig.get_size_inches()
    f = min(1.0, rect[2] * fw * MOSAIC_DPI / (left + ncols * cw), rect[3] * fh * MOSAIC_DPI / (top + nrows * ch))
    tw, th = max(8, int(size[0] * f)), max(8, int(size[1] * f))
    cw, ch, top, left = _layout((tw, th), bars, titled, *heads)
    bar, gy = (max(3, tw // 16) if bars else 0), ch - th
    canvas = np.full((top + nrows * ch, left + ncols * cw, 4), 255, np.uint8)   # RGBA: no alpha plane added
    ax = fig.add_axes(rect)
    ax.set_axis_off()
    marks, texts, norms = [], [], []
    for c, text in enumerate(col_titles or []):
        texts.append((left + c * cw + tw / 2, top - 2, text, "center", "bottom", fontsize, 0))
    for r, text in enumerate(row_titles or []):
        texts.append((left - 3, top + r * ch + gy + th / 2, text, "right", "center", fontsize, 90))
    for r, row in enumerate(tiles):
        for c, t in enumerate(row):
            if t is None:
                continue
            h, w = t.image.shape[:2]
            f = min(tw / w, th / h)
            nw, nh = max(1, round(w * f)), max(1, round(h * f))
            x0, y0 = left + c * cw + (tw - nw) // 2, top + r * ch + gy + (th - nh) // 2
            how = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
            img = cv2.resize(t.image, (nw, nh), interpolation=how)
            if t.values is not None:     # coloured at the tile's size: the map's pixels are coloured once
                img = blend(img, cv2.resize(np.asarray(t.values, np.float32), (nw, nh), interpolation=how), t.norm,
                            t.cmap)
            canvas[y0:y0 + nh, x0:x0 + nw, :3] = img[..., :3]
            if t.title:
                texts.append((left + c * cw + tw / 2, top + r * ch + gy - 2, t.title, "center", "bottom", fontsize, 0))

            def at(p, f=f, x0=x0, y0=y0):
                q = np.array(p, np.float64)
                q[..., :2] = q[..., :2] * f + [x0, y0]
                return q
            marks.append((t, at, (x0 - 0.5, y0 - 0.5, nw, nh)))
            if t.note:
                texts.append((x0 + nw / 2, y0 + nh / 2, t.note, "center", "center", fontsize, 0))
            if t.bar:
                norms.append(t.norm)
                bx, by = left + c * cw + tw + 2, y0
                grad = plt.get_cmap(t.cmap)(np.linspace(1, 0, nh))[:, :3]
                canvas[by:by + nh, bx:bx + bar, :3] = (grad[:, None, :] * 255).astype(np.uint8)
                lo, hi = t.norm.vmin, t.norm.vmax
                texts.append((bx + bar + 2, by, _short(hi), "left", "top", fontsize - 1.5, 0))
                texts.append((bx + bar + 2, by + nh, _short(lo), "left", "bottom", fontsize - 1.5, 0))
                if t.uniform is not None and lo <= t.uniform <= hi:   # 1/N: a white line edged black across
                    yu = int(np.clip(by + nh * (hi - t.uniform) / (hi - lo), by + 2, by + nh - 3))
                    canvas[yu - 2:yu + 3, bx - 2:bx + bar + 2, :3] = 0
                    canvas[yu - 1:yu + 2, bx - 1:bx + bar + 1, :3] = 255
                    if 0.12 * nh < yu - by < 0.85 * nh:   # named only where it clears the limits' labels
                        texts.append((bx + bar + 2, yu, "1/N", "left", "center", fontsize - 2, 0))
    ax.imshow(canvas, interpolation="nearest")
    for t, at, bounds in marks:
        drawn = [len(ax.collections), len(ax.lines), len(ax.patches)]
        if t.outline is not None:
            draw_outline(ax, at(t.outline))
        if t.box is not None:
            x, y, w, h = t.box
            (bx0, by0), (bx1, by1) = at([x, y]), at([x + w, y + h])
            draw_box(ax, (bx0, by0, bx1 - bx0, by1 - by0))
        if t.ground_truth is not None:
            draw_skeleton(ax, at(t.ground_truth), keypoints_set=t.keypoints_set, ground_truth=True, size=8)
        if t.skeleton is not None:
            draw_skeleton(ax, at(t.skeleton), keypoints_set=t.keypoints_set, size=8)
        for x, y, marker, size_, face, edge in t.points:
            xy = at([x, y])
            ax.scatter([xy[0]], [xy[1]], marker=marker, s=size_, facecolors=face, edgecolors=edge,
                       linewidths=0.6, zorder=4)
        # a marker or limb past the tile's edge is cut there: it must not land on the next tile or in the gap
        clip = Rectangle(bounds[:2], *bounds[2:], transform=ax.transData, fill=False, visible=False)
        added = [a for kind, n in zip((ax.collections, ax.lines, ax.patches), drawn) for a in list(kind)[n:]]
        for artist in added:
            artist.set_clip_path(clip)
            artist.set_clip_on(True)
    for x, y, text, ha, va, fs, rot in texts:
        ax.text(x, y, text, ha=ha, va=va, fontsize=fs, rotation=rot, clip_on=False)
    ax.set_xlim(-0.5, canvas.shape[1] - 0.5)
    ax.set_ylim(canvas.shape[0] - 0.5, -0.5)
    ax.tile_norms = norms
    ax.tile_bounds = [b for _, _, b in marks]          # (x, y, w, h) of every drawn tile, in the axes' data
    # where the image lands in the figure (it keeps its aspect, centred in `rect`), in figure fractions
    fw, fh = fig.get_size_inches()
    k = min(rect[2] * fw / canvas.shape[1], rect[3] * fh / canvas.shape[0])
    dw, dh = canvas.shape[1] * k / fw, canvas.shape[0] * k / fh
    ax.drawn_box = (rect[0] + (rect[2] - dw) / 2, rect[1] + (rect[3] - dh) / 2, dw, dh)
    return ax


def _short(v: float) -> str:
    """A colour bar's limit in few characters: 0.12, 8.1e-5."""
    return f"{v:.2g}".replace("e-0", "e-").replace("e+0", "e")


def _layout(size: tuple[int, int], bars: bool, titled: bool, col_titles: bool, row_titles: bool):
    """(cell w, cell h, top margin, left margin) in pixels: a tile with its colour bar, the room for the
    bar's labels and the tile's title, and the column and row headings."""
    tw, th = size
    cw = tw + (max(3, tw // 16) + int(tw * 0.36) if bars else 0) + int(tw * 0.06)
    ch = th + int(th * (0.2 if titled else 0.04))
    return cw, ch, int(th * 0.2) if col_titles else 0, int(tw * 0.14) if row_titles else 0


def mosaic_size(nrows: int, ncols: int, size: tuple[int, int] = (192, 256), bars: bool = True,
                inches_per_tile: float = 2.2, extra_w: float = 0.0, extra_h: float = 0.0, titled: bool = True,
                col_titles: bool = False, row_titles: bool = False) -> tuple[float, float]:
    """The figure size (inches) a mosaic of nrows x ncols tiles needs (arguments as `mosaic`'s), tiles at
    most `inches_per_tile` wide, the whole within MAX_FIGURE_IN a side (plus `extra_w`/`extra_h` for what
    surrounds it)."""
    cw, ch, top, left = _layout(size, bars, titled, col_titles, row_titles)
    w, h = left + ncols * cw, top + nrows * ch
    f = min(inches_per_tile / cw, (MAX_FIGURE_IN - extra_w) / w, (MAX_FIGURE_IN - extra_h) / h)
    return w * f + extra_w, h * f + extra_h


# ------------------------------------------------------------------------------------------- titles

def caption(meta: dict | None, model_name: str = "model") -> str:
    """'image.jpg · annotation 183126 · model default' from an explanation's meta (what is known of it)."""
    meta = meta or {}
    parts = []
    if meta.get("image"):
        parts.append(str(meta["image"]))
    if meta.get("person"):
        parts.append(str(meta["person"]))
    elif meta.get("box") is not None:
        parts.append("box " + ",".join(f"{float(v):.0f}" for v in meta["box"]))
    model = f"model {meta.get('model') or model_name}"
    weights = meta.get("weights")
    if weights == "random":           # an untrained model's maps must not pass for a trained one's
        model += " (random weights)"
    elif weights:
        model += f" (weights {weights})"
    parts.append(model)
    return " · ".join(parts)


# ------------------------------------------------------------------------------------------- saving

def fit_dpi(fig, dpi: float) -> float:
    """`dpi`, lowered so the figure's longest side is at most MAX_SIDE_PX pixels and its area at most
    MAX_AREA_PX (a photo-filled PNG then stays a few MB)."""
    w, h = fig.get_size_inches()
    w, h = w * 1.05, h * 1.05      # what the tight bounding box may add: labels reaching past the edge
    return min(float(dpi), MAX_SIDE_PX / max(w, h), (MAX_AREA_PX / (w * h)) ** 0.5)


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fit_dpi(fig, 100), bbox_inches=None if getattr(fig, "laid_out", False)
                else "tight")
    return buf.getvalue()


def write_figure(fig, path: str | Path, fmt: str, dpi: int = 150) -> None:
    """`fig.savefig` in format `fmt`, marked as written by tpexplain (see tpexplain.io.made_by_tpexplain);
    the dpi is lowered if needed to keep the longest side within MAX_SIDE_PX."""
    from .io import savefig_kwargs
    # a figure laid out to the inch (`laid_out`: the mosaics) is saved as is: no second drawing to trim it
    bbox = None if getattr(fig, "laid_out", False) else "tight"
    fig.savefig(path, dpi=fit_dpi(fig, dpi), bbox_inches=bbox, format=fmt, **savefig_kwargs(fmt))


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
