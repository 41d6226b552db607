"""Composing an image: backdrop, several people placed and depth-ordered, occluders in front, camera effects."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .backdrop import _background, _clutter, _photo_patch
from .body import _IDS_PER_PERSON
from .canvas import _Canvas, _hull, _ipts, _mul, _rand_color
from .person import _Person, _texture, _visibility

_MAX_PEOPLE = 8
_OCCLUDER_BASE = 60000  # owner ids >= this are occluders drawn over people


def _occluders(rng: np.random.Generator, cv: _Canvas, people: list[_Person]) -> int:
    """Objects in front of people (hiding body parts); they own their pixels in the owner map."""
    h, w = cv.img.shape[:2]
    k = int(rng.integers(1, 3))
    for j in range(k):
        person = people[int(rng.integers(len(people)))]
        kp = person.keypoints()
        height = float(np.ptp(kp[:, 1])) + 10
        c = kp[int(rng.integers(len(kp)))] + rng.normal(0, 0.1, 2) * height
        oid = _OCCLUDER_BASE + j
        col = _rand_color(rng)
        kind = rng.random()
        if kind < 0.4:  # box, sign, table edge: axis-aligned-ish rectangle
            rw, rh = rng.uniform(0.1, 0.5) * height, rng.uniform(0.1, 0.5) * height
            pts = cv2.boxPoints(((float(c[0]), float(c[1])), (rw, rh), float(rng.normal(0, 8))))
        elif kind < 0.65:  # ball, balloon, round sign
            rr = rng.uniform(0.05, 0.22) * height
            pts = cv2.ellipse2Poly((int(c[0]), int(c[1])), (int(rr), int(rr * rng.uniform(0.6, 1.4))),
                                   int(rng.uniform(0, 180)), 0, 360, 15).astype(np.float64)
        elif kind < 0.8:  # pole / tree trunk crossing the image
            rw = rng.uniform(0.03, 0.12) * height
            pts = cv2.boxPoints(((float(c[0]), h / 2), (rw, 2.5 * h), float(rng.normal(0, 6))))
        else:  # blob textured with a photo or noise
            k2 = int(rng.integers(5, 9))
            rr = rng.uniform(0.08, 0.25) * height
            ang = np.sort(rng.uniform(0, 2 * math.pi, k2))
            pts = np.stack((c[0] + rr * np.cos(ang) * rng.uniform(0.6, 1.0, k2),
                            c[1] + rr * np.sin(ang) * rng.uniform(0.6, 1.0, k2)), 1)
            pts = _hull(pts).astype(np.float64)
        pts = np.asarray(pts, np.float64)
        if kind >= 0.8:
            x0, y0 = np.floor(pts.min(0)).astype(int)
            x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
            xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if xb <= xa or yb <= ya:
                continue
            tex = _photo_patch(rng, xb - xa, yb - ya)
            if tex is None:
                tex = np.full((yb - ya, xb - xa, 3), col, np.uint8)
            mask = np.zeros((yb - ya, xb - xa), np.uint8)
            cv2.fillConvexPoly(mask, _ipts(pts - [xa, ya]), 255, cv2.LINE_8, 4)
            cv.img[ya:yb, xa:xb][mask > 0] = tex[mask > 0]
            cv.owner[ya:yb, xa:xb][mask > 0] = oid
        else:
            ip = _ipts(pts)
            cv2.fillConvexPoly(cv.img, ip, _mul(col, 0.75), cv2.LINE_AA, 4)
            ctr = pts.mean(0)
            cv2.fillConvexPoly(cv.img, _ipts(ctr + (pts - ctr) * 0.85 - 1.5), col, cv2.LINE_AA, 4)
            cv2.fillConvexPoly(cv.owner, ip, oid, cv2.LINE_8, 4)
    return k


def _camera_effects(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Brightness/contrast/colour/gamma jitter, blur, sensor noise and JPEG artefacts."""
    x = np.arange(256, dtype=np.float32) / 255
    gamma = math.exp(rng.normal(0, 0.2))
    contrast, bright = rng.uniform(0.7, 1.25), rng.uniform(-30, 30)
    gains = rng.uniform(0.85, 1.15, 3)
    lut = ((x ** gamma - 0.5) * contrast + 0.5) * 255 + bright
    lut = np.clip(lut[:, None] * gains[None], 0, 255).astype(np.uint8)
    img = cv2.LUT(img, lut.reshape(256, 1, 3))
    r = rng.random()
    if r < 0.2:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.3))
    elif r < 0.26:  # motion blur
        k = int(rng.integers(3, 8))
        ker = np.zeros((k, k), np.float32)
        ker[k // 2] = 1.0 / k
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
        ker = cv2.warpAffine(ker, rot, (k, k))
        img = cv2.filter2D(img, -1, ker / max(ker.sum(), 1e-6))
    if rng.random() < 0.3:
        amp = int(rng.integers(4, 16))
        tile = rng.integers(0, amp, (97, 101, 3), dtype=np.uint8)
        h, w = img.shape[:2]
        reps = (h // 97 + 2, w // 101 + 2, 1)
        oy, ox = int(rng.integers(97)), int(rng.integers(101))
        noise = np.tile(tile, reps)[oy:oy + h, ox:ox + w]
        img = cv2.subtract(cv2.add(img, noise), np.full_like(noise, amp // 2))
    if rng.random() < 0.25:
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 75))])
        if ok:
            img = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return img


def _render(seed: int, min_people: int = 1, max_people: int = 3):
    """render_image plus the owner map (uint16: 0 background, 1 + 32 * i + part for person i,
    >= 60000 occluders) and a dict of extras (each person's owner id base)."""
    if not 0 <= min_people <= max_people <= _MAX_PEOPLE:
        raise ValueError(f"need 0 <= min_people <= max_people <= {_MAX_PEOPLE}")
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(256, 513)), int(rng.integers(256, 513))
    img = _background(rng, h, w)
    _clutter(rng, img, int(rng.integers(0, 12)))
    owner = np.zeros((h, w), np.uint16)
    cv = _Canvas(img, owner)
    counts = np.arange(min_people, max_people + 1)
    weights = 0.6 ** (counts - min_people)  # one person most often, crowds less so
    n = int(rng.choice(counts, p=weights / weights.sum()))
    people = [_Person(rng) for _ in range(n)]
    boxes: list[tuple[float, float, float, float]] = []
    for i, p in enumerate(people):
        ex0, ey0, ex1, ey1 = p.extent()
        ew, eh = ex1 - ex0, ey1 - ey0
        frac = rng.uniform(0.4, 0.95) if i == 0 else rng.uniform(0.3, 0.9)
        s = frac * min(h / eh, w / ew)
        bw, bh = ew * s, eh * s
        trunc = rng.random() < 0.18
        best = None
        for _ in range(4 if boxes else 1):  # keep people from hiding each other completely
            if trunc:
                x0 = rng.uniform(-0.4 * bw, max(-0.4 * bw, w - 0.6 * bw))
                y0 = rng.uniform(-0.4 * bh, max(-0.4 * bh, h - 0.6 * bh))
            else:
                x0 = rng.uniform(0, max(0.0, w - bw)) if bw < w else (w - bw) / 2
                y0 = rng.uniform(0, max(0.0, h - bh)) if bh < h else (h - bh) / 2
            box = (x0, y0, x0 + bw, y0 + bh)
            ov = max((_iou(box, b) for b in boxes), default=0.0)
            if best is None or ov < best[0]:
                best = (ov, box)
            if ov < 0.3:
                break
        x0, y0 = best[1][:2]
        boxes.append(best[1])
        p.place(s, x0 - ex0 * s, y0 - ey0 * s)
    # nearer (bigger) people are usually drawn later, on top
    order = sorted(range(n), key=lambda i: people[i].s) if rng.random() < 0.8 else list(range(n))
    L = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.9, 0.2), rng.uniform(0.5, 1.0)])
    light = L / np.linalg.norm(L)
    silhouettes: dict[int, tuple[list[float], float]] = {}
    bases = {}
    for rank, i in enumerate(order):
        base = 1 + _IDS_PER_PERSON * rank
        bases[i] = base
        people[i].draw(cv, base, light)
        x0, y0, x1, y1 = people[i].pixel_box(w, h)
        if x1 <= x0 or y1 <= y0:
            silhouettes[i] = ([0.0, 0.0, 0.0, 0.0], 0.0)
            continue
        _texture(rng, cv, (x0, y0, x1, y1), base, people[i])
        sub = owner[y0:y1, x0:x1]
        mask = ((sub >= base) & (sub < base + _IDS_PER_PERSON)).astype(np.uint8)
        bx, by, bw, bh = cv2.boundingRect(mask)
        silhouettes[i] = ([float(x0 + bx), float(y0 + by), float(bw), float(bh)], float(cv2.countNonZero(mask)))
    n_occ = _occluders(rng, cv, people) if n and rng.random() < 0.4 else 0
    img = _camera_effects(rng, cv.img)
    annots = []
    for i, p in enumerate(people):
        box, area = silhouettes[i]
        if area <= 0:
            continue  # fully outside the image
        annots.append(dict(keypoints=_visibility(p, owner, bases[i]), bbox=box, area=area, view=p.camera.view,
                           pose=p.pose))
    return img, annots, owner, dict(bases=[bases[i] for i in range(n) if silhouettes[i][1] > 0],
                                    occluders=n_occ)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def render_image(seed: int, *, min_people: int = 1, max_people: int = 3) -> tuple[np.ndarray, list[dict]]:
    """Deterministic for a seed. Returns an RGB uint8 image (H, W, 3) and one dict per person:
    {"keypoints": np.ndarray (17, 3) float32 [x, y, v] in image pixels (COCO convention: v=2 visible,
     v=1 labelled but occluded, v=0 not labelled -> x=y=0, used for keypoints outside the image),
     "bbox": [x, y, w, h] (tight box of the person's drawn silhouette, clipped to the image),
     "area": float (silhouette pixel area), "view": "front"|"back"|"left"|"right", "pose": str}

    Views name the side of the body turned to the camera: "left" shows the person's left side, so they
    face the image's left. bbox and area cover the person's whole drawn silhouette, including parts
    later hidden by other people or occluders. Pixel centres are at integer coordinates (OpenCV)."""
    img, annots, _, _ = _render(seed, min_people, max_people)
    return img, annots
