"""2-D drawing shared by people and scenery: sub-pixel polygons, tapered capsules, colours, the image + owner canvas."""
from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

_UNIT = {n: np.linspace(0.0, 1.0, n) for n in range(2, 20)}


def _capsule(p1, p2, r1: float, r2: float, cap2: bool = True, lit=None):
    """Outline of a tapered capsule (two circles and their outer tangents) as a convex polygon.

    With `lit` (an offset), also returns a thinner copy shifted by it, for two-tone shading."""
    dx, dy = p2[0] - p1[0], p2[1] - p1[1]
    d = math.hypot(dx, dy)
    if d <= abs(r1 - r2) + 1e-3:  # one circle swallows the other: draw the bigger one
        c, r = (p1, r1) if r1 >= r2 else (p2, r2)
        n = int(min(16, max(6, r)))
        a = 2 * math.pi * _UNIT[n + 1][:-1]
        cs = np.stack((np.cos(a), np.sin(a)), 1)
        out = c + r * cs
        return out if lit is None else (out, c + lit + 0.62 * r * cs)
    th = math.atan2(dy, dx)
    h = math.pi / 2 - math.asin((r1 - r2) / d)
    n1 = int(min(12, max(4, r1 * 0.7 + 3)))
    n2 = int(min(12, max(3, r2 * 0.7 + 2))) if cap2 else 2
    ang = np.empty(n1 + n2)
    ang[:n1] = th + h + (2 * math.pi - 2 * h) * _UNIT[n1]
    if cap2:
        ang[n1:] = th - h + 2 * h * _UNIT[n2]
    else:  # a flat end, for sleeve and trouser hems
        ang[n1:] = (th - math.pi / 2, th + math.pi / 2)
    rad = np.empty((n1 + n2, 1))
    rad[:n1], rad[n1:] = r1, r2
    cs = np.empty((n1 + n2, 2))
    cs[:, 0] = np.cos(ang)
    cs[:, 1] = np.sin(ang)
    cs *= rad
    ctr = np.empty((n1 + n2, 2))
    ctr[:n1], ctr[n1:] = p1, p2
    out = ctr + cs
    return out if lit is None else (out, ctr + lit + 0.62 * cs)


def _ipts(pts: np.ndarray) -> np.ndarray:
    # 4 fractional bits: cv2 draws sub-pixel geometry so small limbs don't jitter by a pixel
    return (pts * 16.0 + 0.5).astype(np.int32)


def _hull(pts: np.ndarray) -> np.ndarray:
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)


class _Canvas:
    """The RGB image plus the owner map, drawn into together."""

    def __init__(self, img: np.ndarray, owner: np.ndarray):
        self.img, self.owner = img, owner

    def fill(self, pts: np.ndarray, color, oid: int | None, aa: bool = True) -> None:
        ip = _ipts(pts)
        cv2.fillConvexPoly(self.img, ip, color, cv2.LINE_AA if aa else cv2.LINE_8, 4)
        if oid is not None:
            cv2.fillConvexPoly(self.owner, ip, oid, cv2.LINE_8, 4)

    def shaded(self, pts: np.ndarray, inner: np.ndarray | None, color, shade: float, oid: int) -> None:
        """A dark outer shape and a lit inner one shifted toward the light: cheap 3-D shading."""
        self.fill(pts, _mul(color, shade), oid)
        if inner is not None:
            self.fill(inner, color, None)


def _mul(color, f: float) -> tuple[int, int, int]:
    return (int(min(255, color[0] * f)), int(min(255, color[1] * f)), int(min(255, color[2] * f)))


def _rand_color(rng: np.random.Generator, sat: tuple[float, float] = (0.0, 1.0),
                val: tuple[float, float] = (0.1, 1.0)) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return (int(r * 255), int(g * 255), int(b * 255))

