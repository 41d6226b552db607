"""Drawing one person's parts: shaded limbs with sleeves, trousers and socks; hands, torso, neck, skirt, hair."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .body import _ELL, _HAIR_PART, _NECK, _PELVIS, _TORSO, _unit
from .canvas import _Canvas, _capsule, _hull, _ipts, _mul


class _Pen:
    """Draws shaded capsules for one person: its scale s (pixels per unit height), light offset, shade and skin."""

    def __init__(self, cv: _Canvas, s: float, lo: np.ndarray, shade: float, skin):
        self.cv, self.s, self.lo, self.shade, self.skin = cv, s, lo, shade, skin

    def piece(self, p1, p2, r1, r2, color, oid, cap2=True) -> None:
        """A tapered capsule from p1 to p2 with radii r1, r2 in body units."""
        s, lo, cv = self.s, self.lo, self.cv
        r1, r2 = r1 * s, r2 * s
        if min(r1, r2) > 1.6:
            outer, inner = _capsule(p1, p2, r1, r2, cap2, lit=lo * (r1 + r2) * 0.5)
        else:  # too thin to show shading
            outer, inner = _capsule(p1, p2, r1, r2, cap2), None
        cv.shaded(outer, inner, color, self.shade, oid)

    def limb(self, p1, p2, r1, r2, skin_f, garment, oid, cap_end=True, sock=None, parent=None) -> None:
        """A segment with skin and a garment covering [0, skin_f] or all of it (skin_f >= 1);
        `parent` (the previous joint) adds a crease on the inside of a bent elbow or knee."""
        piece, s, cv = self.piece, self.s, self.cv
        if skin_f < 1.0:
            piece(p1, p2, r1, r2, self.skin, oid)
        if skin_f > 0.0:
            f = min(skin_f, 1.0)
            q = p1 + (p2 - p1) * f
            # a hem mid-segment is flat; a garment running into the next segment is rounded
            piece(p1, q, r1 * 1.06, (r1 + (r2 - r1) * f) * 1.06, garment, oid, cap2=cap_end and f >= 1.0)
        if sock is not None:
            q = p1 + (p2 - p1) * 0.8
            piece(q, p2, r1 + (r2 - r1) * 0.8, r2 * 1.05, sock, oid)
        if parent is not None:
            u1, u2 = parent - p1, p2 - p1
            n1, n2 = math.hypot(*u1), math.hypot(*u2)
            if n1 > 1 and n2 > 1 and float(u1 @ u2) / (n1 * n2) > -0.7 and r1 * s > 2.5:
                inner = _unit(u1 / n1 + u2 / n2) * r1 * s
                col = _mul(garment if skin_f > 0 else self.skin, self.shade * 0.8)
                cv2.line(cv.img, tuple(_ipts(p1 + inner * 0.25)), tuple(_ipts(p1 + inner * 0.95)), col,
                         max(1, int(r1 * s * 0.15)), cv2.LINE_AA, 4)


def _hand(pen: _Pen, B: dict, wr, tip, oid: int) -> None:
    """A hand from the wrist to the fingertips: palm and fingers as two capsules."""
    r = B["r_hand"]
    mid = wr + (tip - wr) * 0.55
    pen.piece(wr, mid, B["r_wri"] * 1.05, r * 1.15, pen.skin, oid)
    pen.piece(mid, tip, r * 1.15, r * 0.75, pen.skin, oid)


def _torso(person, pen: _Pen, base: int) -> None:
    """Pelvis and chest as bands between the placed person's torso cross-sections, then the shirt's neckline."""
    cv, look = pen.cv, person.look
    rings = person.p("rings")
    ctr = person.p("ring_centers")
    n = len(_ELL)

    def band(i: int, j: int, color, oid: int) -> None:
        ri, rj = rings[i * n:(i + 1) * n], rings[j * n:(j + 1) * n]
        outer = _hull(np.concatenate((ri, rj)))
        ci = ctr[min(i, len(ctr) - 1)]
        cj = ctr[min(j, len(ctr) - 1)]
        off = pen.lo * float(np.linalg.norm(ri[0] - ci)) * 0.6
        inner = _hull(np.concatenate((ci + (ri - ci) * 0.7, cj + (rj - cj) * 0.7))) + off
        cv.shaded(outer, inner, color, look.shade, oid)

    band(0, 1, look.pants, base + _PELVIS)
    for i in (1, 2, 3):
        band(i, i + 1, look.shirt, base + _TORSO)
    if look.long_shirt:
        band(5, 1, look.shirt, base + _TORSO)
    if (person.camera.Rc @ person.sk.front_n)[2] > 0.25 and look.sleeve != "none":
        cv.fill(_hull(person.p("neckline")), _mul(look.skin, 0.95), base + _NECK)


def _neck(person, pen: _Pen, base: int) -> None:
    """The neck, from the shoulders up into the head."""
    B = person.B
    hc2 = person.p("head")[0]
    pen.piece(person.p("neck_base")[0], hc2 + (person.p("neck_top")[0] - hc2) * 0.6,
              B["neck_r"] * 1.1, B["neck_r"], person.look.skin, base + _NECK)


def _hair_back(person, cv: _Canvas, base: int) -> None:
    """Long hair hanging behind the head."""
    cv.fill(_hull(person.p("hair_poly")), _mul(person.look.hair, 0.8), base + _HAIR_PART)


def _skirt(person, cv: _Canvas, oid: int) -> None:
    """A skirt from the waist ring to skirt_f along both thighs."""
    rings = person.p("rings")
    n = len(_ELL)
    pts = [rings[6 * n:7 * n]]
    f = person.look.skirt_f
    for side in "lr":
        h, k = person.p(f"{side}_hip")[0], person.p(f"{side}_knee")[0]
        q = h + (k - h) * f
        d = _unit(k - h)
        pts.append(q[None] + np.array([[-d[1], d[0]], [d[1], -d[0]]]) * person.B["r_hip"] * 1.35 * person.s)
    outer = _hull(np.concatenate(pts))
    cv.shaded(outer, None, person.look.pants, person.look.shade * 1.15, oid)
