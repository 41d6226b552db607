"""Heatmaps → keypoints: argmax, DARK refinement (Zhang et al. 2020) and the flip test's flip-back.

`decode(..., method="official")` (the default) reproduces the official post-processing of each family:
TransPose and TokenPose `get_final_preds` (DARK: blur, log, one Taylor step, no guard), ViTPose's
mmpose `post_dark_udp` (its config uses UDP). `method="guarded"` is this package's earlier variant,
which keeps the argmax whenever the Newton step is longer than one heatmap pixel.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .keypoints import FLIP_PAIRS

DECODINGS = ("official", "guarded")
BLUR_KERNEL = 11   # TEST.BLUR_KERNEL of every TransPose/TokenPose config; ViTPose's modulate_kernel


def argmax_coords(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, H, W) → integer peak coords (B, K, 2) as (x, y) and peak values (B, K)."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, -1)
    idx = flat.argmax(-1)
    maxvals = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    coords = np.stack([idx % w, idx // w], -1).astype(np.float32)
    coords[maxvals <= 0] = 0
    return coords, maxvals


def _blur_keep_max(hm: np.ndarray, kernel: int) -> np.ndarray:
    """The official `gaussian_blur` of one map: zero border, blurred in float64, stored back as the
    heatmap's dtype, rescaled by original max / blurred max (whatever their signs: a blurred maximum
    <= 0 flips or blows up the map exactly as the official code does)."""
    h, w = hm.shape
    pad = (kernel - 1) // 2
    padded = np.zeros((h + 2 * pad, w + 2 * pad))
    padded[pad:pad + h, pad:pad + w] = hm
    out = cv2.GaussianBlur(padded, (kernel, kernel), 0)[pad:pad + h, pad:pad + w].astype(hm.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        out *= hm.max() / out.max()
    return out


def _derivatives(lg: np.ndarray, px: int, py: int) -> tuple:
    """Central differences at (px, py): dx, dy and the 2-pixel second differences dxx, dxy, dyy."""
    dx = 0.5 * (lg[py, px + 1] - lg[py, px - 1])
    dy = 0.5 * (lg[py + 1, px] - lg[py - 1, px])
    dxx = 0.25 * (lg[py, px + 2] - 2 * lg[py, px] + lg[py, px - 2])
    dxy = 0.25 * (lg[py + 1, px + 1] - lg[py - 1, px + 1] - lg[py + 1, px - 1] + lg[py - 1, px - 1])
    dyy = 0.25 * (lg[py + 2, px] - 2 * lg[py, px] + lg[py - 2, px])
    return dx, dy, dxx, dxy, dyy


def dark_refine(heatmaps: np.ndarray, coords: np.ndarray, kernel: int = BLUR_KERNEL,
                guarded: bool = False) -> np.ndarray:
    """One Newton step −H⁻¹∇ on the log of the blurred heatmap around each argmax (the DARK decoding).

    Unguarded (default) it is the official `get_final_preds`: the step is applied whatever its length,
    wherever the argmax is at least 2 pixels inside the map and the Hessian's determinant is not 0.
    `guarded` is the earlier variant: it keeps the argmax when the step is longer than a pixel in x or
    y (flat or saddle-shaped maps of untrained models), blurs in float32 and leaves a map whose blurred
    maximum is <= 0 unscaled.
    """
    b, k, h, w = heatmaps.shape
    coords = coords.copy()
    for i in range(b):
        for j in range(k):
            px, py = int(coords[i, j, 0]), int(coords[i, j, 1])
            if not (1 < px < w - 2 and 1 < py < h - 2):
                continue
            blurred = _blur_guarded(heatmaps[i, j], kernel) if guarded else _blur_keep_max(heatmaps[i, j], kernel)
            dx, dy, dxx, dxy, dyy = _derivatives(np.log(np.maximum(blurred, 1e-10)), px, py)
            det = dxx * dyy - dxy * dxy
            if det == 0:
                continue
            if guarded:
                offset = -(np.array([[dyy, -dxy], [-dxy, dxx]]) / det @ np.array([dx, dy]))
                if np.all(np.abs(offset) <= 1.0):
                    coords[i, j] += offset
                continue
            try:
                with np.errstate(all="ignore"):
                    coords[i, j] += -(np.linalg.inv(np.array([[dxx, dxy], [dxy, dyy]])) @ np.array([dx, dy]))
            except np.linalg.LinAlgError:   # only for non-finite maps, where the official code raises
                pass
    return coords


def _blur_guarded(hm: np.ndarray, kernel: int) -> np.ndarray:
    h, w = hm.shape
    pad = (kernel - 1) // 2
    padded = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    padded[pad:pad + h, pad:pad + w] = hm
    blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[pad:pad + h, pad:pad + w]
    if blurred.max() > 0:
        blurred *= hm.astype(np.float32).max() / blurred.max()
    return blurred


def dark_udp_refine(heatmaps: np.ndarray, coords: np.ndarray, kernel: int = BLUR_KERNEL) -> np.ndarray:
    """ViTPose's official refinement (mmpose `post_dark_udp`): blur with the image-border reflection
    and no rescaling, clip to [0.001, 50], log, edge-pad by one pixel, then one Newton step with
    one-pixel differences and the Hessian regularised by float32 eps, at every keypoint.

    As the official code, the neighbours are read from the whole batch flattened: the same as indexing
    each map, except for an empty map's keypoint (-1, -1), whose left and upper neighbours then come from
    the previous map's last row (for the batch's first map, from the batch's end).
    """
    b, k, h, w = heatmaps.shape
    hm = np.ascontiguousarray(heatmaps, dtype=np.float32).copy()
    for i in range(b):
        for j in range(k):
            hm[i, j] = cv2.GaussianBlur(hm[i, j], (kernel, kernel), 0)
    flat = np.pad(np.log(np.clip(hm, 0.001, 50)), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge").ravel()
    row = w + 2
    at = (coords[..., 0] + 1 + (coords[..., 1] + 1) * row).astype(int) + row * (h + 2) * np.arange(b * k).reshape(b, k)

    def m(dx: int, dy: int) -> np.ndarray:
        return flat[at + dx + dy * row]

    dx, dy = 0.5 * (m(1, 0) - m(-1, 0)), 0.5 * (m(0, 1) - m(0, -1))
    dxx = m(1, 0) - 2 * m(0, 0) + m(-1, 0)
    dyy = m(0, 1) - 2 * m(0, 0) + m(0, -1)
    dxy = 0.5 * (m(1, 1) - m(1, 0) - m(0, 1) + 2 * m(0, 0) - m(-1, 0) - m(0, -1) + m(-1, -1))
    hess = np.stack([dxx, dxy, dxy, dyy], -1).reshape(b, k, 2, 2) + np.finfo(np.float32).eps * np.eye(2)
    try:
        with np.errstate(all="ignore"):
            step = np.einsum("bkij,bkj->bki", np.linalg.inv(hess), np.stack([dx, dy], -1))
    except np.linalg.LinAlgError:   # only for non-finite maps, where the official code raises
        return coords.copy()
    return (coords - step).astype(coords.dtype)     # the official code steps its float32 coords in place


def flip_back(heatmaps: torch.Tensor, flip_pairs=FLIP_PAIRS) -> torch.Tensor:
    """Heatmaps of a horizontally flipped input → heatmaps of the original (mirror, swap left/right)."""
    out = heatmaps.flip(-1).clone()
    for a, b in flip_pairs:
        out[:, [a, b]] = out[:, [b, a]]
    return out


def decode(heatmaps: np.ndarray, dark: bool = True, method: str = "official", udp: bool = False,
           kernel: int = BLUR_KERNEL) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, H, W) heatmaps → keypoints in heatmap pixels (B, K, 2) and scores (B, K).

    `method`: "official" (the family's own post-processing; `udp` selects ViTPose's) or "guarded".
    """
    if method not in DECODINGS:
        raise ValueError(f"unknown decoding '{method}'; use {' or '.join(DECODINGS)}")
    coords, maxvals = argmax_coords(heatmaps)
    if dark:
        if method == "guarded":
            coords = dark_refine(heatmaps, coords, kernel, guarded=True)
        elif udp:
            coords[maxvals <= 0] = -1     # mmpose's `_get_max_preds` marks an empty map -1, not 0
            coords = dark_udp_refine(heatmaps, coords, kernel)
        else:
            coords = dark_refine(heatmaps, coords, kernel)
    return coords, maxvals
