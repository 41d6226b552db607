"""What is behind the people: backgrounds and clutter, some textured with real photos bundled with matplotlib."""
from __future__ import annotations

import gzip
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np

from .appearance import _SKIN
from .canvas import _capsule, _ipts, _mul, _rand_color

_PHOTOS: list[np.ndarray] | None = None


def _photos() -> list[np.ndarray]:
    """Real photo textures bundled with matplotlib (found without importing it), cached per process."""
    global _PHOTOS
    if _PHOTOS is not None:
        return _PHOTOS
    out: list[np.ndarray] = []
    try:
        spec = importlib.util.find_spec("matplotlib")
        root = Path(spec.origin).parent / "mpl-data" / "sample_data" if spec and spec.origin else None
    except (ImportError, ValueError):
        root = None
    if root is not None and root.is_dir():
        for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
            im = cv2.imread(str(root / name), cv2.IMREAD_UNCHANGED)
            if im is None or im.ndim != 3:
                continue
            if im.shape[2] == 4:  # composite transparency onto white
                al = im[..., 3:4].astype(np.float32) / 255
                im = (im[..., :3] * al + 255 * (1 - al)).astype(np.uint8)
            im = np.ascontiguousarray(im[..., ::-1])
            if name == "grace_hopper.jpg" and im.shape[:2] == (600, 512):
                # only the flag and the uniform: an unannotated real face would be a wrong negative
                out += [im[:, :130].copy(), im[380:].copy()]
            else:
                out.append(im)
        for name, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
            try:
                with np.load(root / name) as z:
                    out.append(_gray_u8(z[key]))
            except (OSError, KeyError, ValueError):
                pass
        try:  # an MRI slice: 256x256 big-endian uint16
            with gzip.open(root / "s1045.ima.gz") as f:
                out.append(_gray_u8(np.frombuffer(f.read(), ">u2").reshape(256, 256)))
        except (OSError, ValueError):
            pass
    _PHOTOS = out
    return out


def _gray_u8(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    a = (a - a.min()) / (np.ptp(a) + 1e-6) * 255
    return a.astype(np.uint8)


def _photo_patch(rng: np.random.Generator, w: int, h: int) -> np.ndarray | None:
    photos = _photos()
    if not photos:
        return None
    src = photos[int(rng.integers(len(photos)))]
    H, W = src.shape[:2]
    f = rng.uniform(0.25, 1.0)
    cw, ch = max(8, int(W * f)), max(8, int(H * f * rng.uniform(0.7, 1.4)))
    ch = min(ch, H)
    x, y = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
    crop = src[y:y + ch, x:x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    if crop.ndim == 2:  # colourise height maps / scans with a random two-colour ramp
        c1, c2 = np.array(_rand_color(rng), np.float32), np.array(_rand_color(rng), np.float32)
        lut = (c1 + (c2 - c1) * np.linspace(0, 1, 256, dtype=np.float32)[:, None]).astype(np.uint8)
        crop = cv2.LUT(cv2.merge((crop, crop, crop)), lut.reshape(256, 1, 3))
    return np.ascontiguousarray(crop)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    r = rng.random()
    if r < 0.2:  # smooth 2-D gradient
        corners = np.array([_rand_color(rng) for _ in range(4)], np.uint8).reshape(2, 2, 3)
        img = cv2.resize(corners, (w, h), interpolation=cv2.INTER_LINEAR)
    elif r < 0.38:  # smooth noise at a random scale
        k = int(rng.choice((4, 8, 16, 32)))
        lo = rng.random((max(2, h // k), max(2, w // k), 3), dtype=np.float32)
        base = np.array(_rand_color(rng), np.float32)
        lo = np.clip(base + (lo - 0.5) * rng.uniform(30, 140), 0, 255).astype(np.uint8)
        img = cv2.resize(lo, (w, h), interpolation=cv2.INTER_CUBIC)
    elif r < 0.5:  # stripes
        hw, hh = w // 2, h // 2  # drawn at half size, then smoothly enlarged
        img = np.empty((hh, hw, 3), np.uint8)
        img[:] = _rand_color(rng)
        c2 = _rand_color(rng)
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(5, 30)
        thick = max(1, int(period * rng.uniform(0.15, 0.6)))
        d, n = np.array([math.cos(ang), math.sin(ang)]), np.array([-math.sin(ang), math.cos(ang)])
        L = hw + hh
        for t in np.arange(-L / 2, L / 2, period):
            p = np.array([hw / 2, hh / 2]) + n * t
            cv2.line(img, tuple(_ipts(p - d * L)), tuple(_ipts(p + d * L)), c2, thick, cv2.LINE_AA, 4)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    elif r < 0.62:  # tiles / floor, maybe in perspective
        k = int(rng.integers(3, 14))
        cells = (np.indices((k, k)).sum(0) % 2).astype(np.uint8)
        c1, c2 = np.array(_rand_color(rng), np.uint8), np.array(_rand_color(rng), np.uint8)
        tile = np.where(cells[..., None] > 0, c1, c2).astype(np.uint8)
        img = cv2.resize(tile, (w, h), interpolation=cv2.INTER_NEAREST)
        if rng.random() < 0.6:
            src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
            squeeze = rng.uniform(0.1, 0.45) * w
            dst = np.float32([[squeeze, rng.uniform(0, 0.4) * h], [w - squeeze, rng.uniform(0, 0.4) * h],
                              [w * 1.3, h], [-w * 0.3, h]])
            img = cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h),
                                      borderMode=cv2.BORDER_REPLICATE)
    elif r < 0.82:  # real photo textures
        img = _photo_patch(rng, w, h)
        if img is None:
            img = np.full((h, w, 3), _rand_color(rng), np.uint8)
    else:  # a "room": wall and floor with a horizon, door and window frames
        img = np.empty((h, w, 3), np.uint8)
        hy = int(h * rng.uniform(0.35, 0.8))
        wall, floor = _rand_color(rng, (0, 0.5), (0.3, 1.0)), _rand_color(rng, (0, 0.6), (0.15, 0.8))
        img[:hy] = wall
        img[hy:] = floor
        for _ in range(int(rng.integers(0, 4))):
            x = int(rng.integers(0, w))
            ww, hh = int(rng.integers(w // 10, w // 3)), int(rng.integers(h // 6, hy + 1))
            cv2.rectangle(img, (x, hy - hh), (x + ww, hy), _rand_color(rng), int(rng.integers(-1, 8)) or -1)
    # blurred blobs and fine grain on top of any of the above
    if rng.random() < 0.3:
        lo = cv2.resize(img, (max(2, w // 4), max(2, h // 4)), interpolation=cv2.INTER_AREA)
        for _ in range(int(rng.integers(3, 12))):
            cv2.circle(lo, (int(rng.integers(0, lo.shape[1])), int(rng.integers(0, lo.shape[0]))),
                       int(rng.integers(2, max(3, lo.shape[0] // 3))), _rand_color(rng), -1, cv2.LINE_AA)
        lo = cv2.GaussianBlur(lo, (0, 0), rng.uniform(1.0, 4.0))
        img = cv2.resize(lo, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(img)


def _clutter(rng: np.random.Generator, img: np.ndarray, n: int) -> None:
    """Shapes behind the people, including limb-like sticks and photo patches as distractors."""
    h, w = img.shape[:2]
    size = min(h, w)
    for _ in range(n):
        kind = rng.random()
        col = _rand_color(rng)
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        if kind < 0.22:
            rw, rh = rng.uniform(0.05, 0.4) * size, rng.uniform(0.05, 0.4) * size
            angle = float(rng.normal(0, 10) if rng.random() < 0.7 else rng.uniform(0, 90))
            box = cv2.boxPoints(((x, y), (rw, rh), angle))
            if rng.random() < 0.75:
                cv2.fillConvexPoly(img, _ipts(box), col, cv2.LINE_AA, 4)
            else:
                cv2.polylines(img, [_ipts(box)], True, col, int(rng.integers(1, 6)), cv2.LINE_AA, 4)
        elif kind < 0.4:
            r = rng.uniform(0.02, 0.2) * size
            cv2.ellipse(img, ((x, y), (2 * r, 2 * r * rng.uniform(0.5, 1.5)), rng.uniform(0, 180)), col,
                        -1 if rng.random() < 0.75 else int(rng.integers(1, 5)), cv2.LINE_AA)
        elif kind < 0.55:
            L = rng.uniform(0.1, 0.8) * size
            a = rng.uniform(0, math.pi)
            d = np.array([math.cos(a), math.sin(a)]) * L / 2
            p = np.array([x, y])
            cv2.line(img, tuple(_ipts(p - d)), tuple(_ipts(p + d)), col, int(rng.integers(1, 7)), cv2.LINE_AA, 4)
        elif kind < 0.8:  # limb-like sticks: two tapered segments with a rounded joint
            colors = (tuple(int(c) for c in _SKIN[rng.integers(len(_SKIN))]), col)
            c = colors[int(rng.integers(2))]
            L = rng.uniform(0.06, 0.25) * size
            r = L * rng.uniform(0.12, 0.25)
            a = rng.uniform(0, 2 * math.pi)
            p0 = np.array([x, y])
            p1 = p0 + L * np.array([math.cos(a), math.sin(a)])
            a += rng.uniform(-2.2, 2.2)
            p2 = p1 + L * rng.uniform(0.7, 1.1) * np.array([math.cos(a), math.sin(a)])
            sh = rng.uniform(0.6, 0.8)
            cv2.fillConvexPoly(img, _ipts(_capsule(p0, p1, r, r * 0.8)), _mul(c, sh), cv2.LINE_AA, 4)
            cv2.fillConvexPoly(img, _ipts(_capsule(p1, p2, r * 0.8, r * 0.6)), _mul(c, sh), cv2.LINE_AA, 4)
            cv2.fillConvexPoly(img, _ipts(_capsule(p0, p1, r * 0.6, r * 0.5)), c, cv2.LINE_AA, 4)
        elif kind < 0.92:
            pw, ph = int(rng.uniform(0.1, 0.4) * size), int(rng.uniform(0.1, 0.4) * size)
            patch = _photo_patch(rng, pw, ph)
            if patch is not None:
                x0, y0 = int(x) - pw // 2, int(y) - ph // 2
                xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + pw), min(h, y0 + ph)
                if xb > xa and yb > ya:
                    img[ya:yb, xa:xb] = patch[ya - y0:yb - y0, xa - x0:xb - x0]
        else:  # random polygon
            k = int(rng.integers(3, 7))
            r = rng.uniform(0.03, 0.2) * size
            ang = np.sort(rng.uniform(0, 2 * math.pi, k))
            pts = np.stack((x + r * np.cos(ang), y + r * np.sin(ang)), 1)
            cv2.fillConvexPoly(img, _ipts(pts), col, cv2.LINE_AA, 4)
