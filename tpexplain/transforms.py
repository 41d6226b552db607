"""Geometry of the top-down pipeline: person box → centre/scale → affine crop, and back.

Two conventions, each as its family's official code (pixel_std 200, 1.25 box padding, the box padded to the
input aspect ratio in both):
- TransPose and TokenPose (DarkPose-derived `box2cs` / `get_affine_transform`): centre x + (w − 1)/2, and a
  similarity built from three point pairs with the "−1" pixel convention: 200·s − 1 image px → size − 1.
- ViTPose (mmpose 0.x with `use_udp=True`: `_xywh2cs`, `get_warp_matrix`, `transform_preds`): centre
  x + w/2, and the UDP warp: 200·s image px → size − 1, per axis (so x and y scale by slightly different
  factors), the box centre on the output's centre (size − 1)/2.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

PIXEL_STD = 200.0
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def box_to_center_scale(box: tuple[float, float, float, float], aspect: float = 192 / 256,
                        padding: float = 1.25, udp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) → centre (2,) and scale (2,) in units of 200 px, padded to width/height = aspect.

    The centre is x + (w − 1)/2 as TransPose's `box2cs`, or with `udp` x + w/2 as mmpose's `_xywh2cs`.
    """
    x, y, w, h = (float(v) for v in box)
    edge = 0.0 if udp else 1.0
    center = np.array([x + (w - edge) * 0.5, y + (h - edge) * 0.5], dtype=np.float32)
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float32) / PIXEL_STD * padding


def _rotate(pt: np.ndarray, rad: float) -> np.ndarray:
    s, c = np.sin(rad), np.cos(rad)
    return np.array([pt[0] * c - pt[1] * s, pt[0] * s + pt[1] * c], dtype=np.float32)


def _third(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def affine_transform(center: np.ndarray, scale: np.ndarray, rot: float, output_size: tuple[int, int],
                     inverse: bool = False) -> np.ndarray:
    """2x3 matrix from image to an output of `output_size` (w, h) (or back, with `inverse`)."""
    src_w = scale[0] * PIXEL_STD
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + _rotate(np.array([0, -(src_w - 1) * 0.5], np.float32), np.deg2rad(rot))
    dst[0] = [(dst_w - 1) * 0.5, (dst_h - 1) * 0.5]
    dst[1] = dst[0] + np.array([0, -(dst_w - 1) * 0.5], np.float32)
    src[2], dst[2] = _third(src[0], src[1]), _third(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def udp_transform(center: np.ndarray, scale: np.ndarray, rot: float, output_size: tuple[int, int],
                  inverse: bool = False) -> np.ndarray:
    """2x3 UDP matrix (Huang et al. 2020) from image to an output of `output_size` (w, h) (or back).

    The 200·scale box maps onto size − 1 output pixels per axis, its centre onto (size − 1)/2: at rot 0
    mmpose's `get_warp_matrix(0, 2·center, size − 1, 200·scale)`, and inverted its `transform_preds(...,
    use_udp=True)`. `rot` turns the same way as in `affine_transform` (mmpose 0.x's `get_warp_matrix`
    turns the other way; only training rotates).
    """
    w_out, h_out = output_size
    sx = (w_out - 1) / (float(scale[0]) * PIXEL_STD)
    sy = (h_out - 1) / (float(scale[1]) * PIXEL_STD)
    r = np.deg2rad(rot)
    linear = np.diag([sx, sy]) @ np.array([[np.cos(r), np.sin(r)], [-np.sin(r), np.cos(r)]])
    shift = np.array([(w_out - 1) * 0.5, (h_out - 1) * 0.5]) - linear @ np.asarray(center, np.float64)
    matrix = np.hstack([linear, shift[:, None]])
    return cv2.invertAffineTransform(matrix) if inverse else matrix


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map (..., 2) points through a 2x3 affine matrix."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


@dataclass
class Crop:
    """Where a model input came from: maps points between image, crop and heatmap."""

    center: np.ndarray
    scale: np.ndarray
    rotation: float
    input_size: tuple[int, int]     # (h, w) of the model input
    heatmap_size: tuple[int, int]   # (h, w) of the heatmaps
    udp: bool = False               # ViTPose's UDP warp instead of TransPose's affine

    def _matrix(self, size: tuple[int, int], inverse: bool) -> np.ndarray:
        warp = udp_transform if self.udp else affine_transform
        return warp(self.center, self.scale, self.rotation, size[::-1], inverse=inverse)

    @property
    def to_crop(self) -> np.ndarray:
        return self._matrix(self.input_size, False)

    @property
    def from_crop(self) -> np.ndarray:
        return self._matrix(self.input_size, True)

    @property
    def to_heatmap(self) -> np.ndarray:
        return self._matrix(self.heatmap_size, False)

    @property
    def from_heatmap(self) -> np.ndarray:
        return self._matrix(self.heatmap_size, True)


def crop_image(image: np.ndarray, crop: Crop) -> np.ndarray:
    """The model's input crop of an RGB uint8 image (bilinear, like the official pipeline)."""
    h, w = crop.input_size
    return cv2.warpAffine(image, crop.to_crop, (w, h), flags=cv2.INTER_LINEAR)


def to_tensor(crops: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """RGB uint8 crops (H, W, 3) or (B, H, W, 3) → ImageNet-normalised float tensor (B, 3, H, W)."""
    arr = np.asarray(crops, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    arr = (arr / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


def denormalize(x: torch.Tensor) -> np.ndarray:
    """Inverse of `to_tensor` for one image: (3, H, W) → RGB uint8 (H, W, 3)."""
    arr = x.detach().cpu().numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)


def gaussian_targets(joints: np.ndarray, heatmap_size: tuple[int, int], sigma: float = 2.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalised Gaussians (peak 1) at sub-pixel joint positions in heatmap coordinates.

    joints: (K, 3) [x, y, v] already in heatmap pixels. Returns targets (K, h, w) and weights (K,).
    """
    h, w = heatmap_size
    k = len(joints)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    target = np.zeros((k, h, w), np.float32)
    weight = np.zeros(k, np.float32)
    for i, (x, y, v) in enumerate(joints):
        if v <= 0 or not (-3 * sigma <= x < w + 3 * sigma and -3 * sigma <= y < h + 3 * sigma):
            continue
        target[i] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
        weight[i] = 1.0
    return target, weight


def clean_bbox(bbox: list[float], width: float, height: float, udp: bool = False) -> list[float] | None:
    """A ground-truth box (x, y, w, h) as the family's official COCO loader cleans it; None when it drops it.

    Both clamp the corner to the image and take the far corner (x2, y2) as the clamped corner plus
    (w - 1, h - 1), clamped to the last pixel, so a box hanging off the left or top edge keeps its size
    (shifted), not its far edge. Then TransPose's and TokenPose's loader (DarkPose-derived) keeps
    [x1, y1, x2 - x1 + 1, y2 - y1 + 1]: the stored size inside the image, cut at the image's edge; it drops
    the box when x2 < x1 or y2 < y1 (wholly right of or below the image). ViTPose's (mmpose 0.x, `udp`)
    keeps [x1, y1, x2 - x1, y2 - y1], one pixel narrower and shorter, and also drops a box of one pixel
    (x2 <= x1 or y2 <= y1). The caller also drops annotations whose `area` is not positive, as both do.
    """
    x, y, w, h = (float(v) for v in bbox[:4])
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if udp:
        return [x1, y1, x2 - x1, y2 - y1] if x2 > x1 and y2 > y1 else None
    return [x1, y1, x2 - x1 + 1.0, y2 - y1 + 1.0] if x2 >= x1 and y2 >= y1 else None
