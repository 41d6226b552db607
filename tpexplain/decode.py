"""Heatmaps → keypoints: argmax, DARK refinement (Zhang et al. 2020) and the flip test's flip-back."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .keypoints import FLIP_PAIRS


def argmax_coords(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, H, W) → integer peak coords (B, K, 2) as (x, y) and peak values (B, K)."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, -1)
    idx = flat.argmax(-1)
    maxvals = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    coords = np.stack([idx % w, idx // w], -1).astype(np.float32)
    coords[maxvals <= 0] = 0
    return coords, maxvals


def dark_refine(heatmaps: np.ndarray, coords: np.ndarray, kernel: int = 11) -> np.ndarray:
    """One Newton step on the log of the blurred heatmap around each argmax (the DARK decoding)."""
    b, k, h, w = heatmaps.shape
    pad = (kernel - 1) // 2
    coords = coords.copy()
    for i in range(b):
        for j in range(k):
            hm = heatmaps[i, j].astype(np.float32)
            peak = hm.max()
            padded = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
            padded[pad:pad + h, pad:pad + w] = hm
            blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[pad:pad + h, pad:pad + w]
            if blurred.max() > 0:
                blurred *= peak / blurred.max()
            lg = np.log(np.maximum(blurred, 1e-10))
            px, py = int(coords[i, j, 0]), int(coords[i, j, 1])
            if not (1 < px < w - 2 and 1 < py < h - 2):
                continue
            dx = 0.5 * (lg[py, px + 1] - lg[py, px - 1])
            dy = 0.5 * (lg[py + 1, px] - lg[py - 1, px])
            dxx = 0.25 * (lg[py, px + 2] - 2 * lg[py, px] + lg[py, px - 2])
            dxy = 0.25 * (lg[py + 1, px + 1] - lg[py - 1, px + 1] - lg[py + 1, px - 1] + lg[py - 1, px - 1])
            dyy = 0.25 * (lg[py + 2, px] - 2 * lg[py, px] + lg[py - 2, px])
            det = dxx * dyy - dxy * dxy
            if det != 0:
                hess_inv = np.array([[dyy, -dxy], [-dxy, dxx]]) / det
                offset = -(hess_inv @ np.array([dx, dy]))
                # a Newton step longer than a pixel means the blurred log-heatmap is not a peak there
                # (flat or saddle-shaped maps of untrained models); the argmax is then the better answer
                if np.all(np.abs(offset) <= 1.0):
                    coords[i, j] += offset
    return coords


def flip_back(heatmaps: torch.Tensor, flip_pairs=FLIP_PAIRS) -> torch.Tensor:
    """Heatmaps of a horizontally flipped input → heatmaps of the original (mirror, swap left/right)."""
    out = heatmaps.flip(-1).clone()
    for a, b in flip_pairs:
        out[:, [a, b]] = out[:, [b, a]]
    return out


def decode(heatmaps: np.ndarray, dark: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(B, K, H, W) heatmaps → keypoints in heatmap pixels (B, K, 2) and scores (B, K)."""
    coords, maxvals = argmax_coords(heatmaps)
    if dark:
        coords = dark_refine(heatmaps, coords)
    return coords, maxvals
