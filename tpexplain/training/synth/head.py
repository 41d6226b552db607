"""The head, ray-cast per pixel as an ellipsoid: skin shading, eyes, brows, mouth, beard, hair or hat, ears and nose."""
from __future__ import annotations

import math

import numpy as np

from .body import _EYE_AZ, _EYE_EL, _RAD, _sph, _unit
from .canvas import _Canvas, _capsule, _hull, _mul


def _head(person, cv: _Canvas, oid: int, light: np.ndarray) -> None:
    """Ray-cast the head ellipsoid per pixel: hair, face features, Lambert shading, AA edge."""
    B, s, look = person.B, person.s, person.look
    a, b, c = B["ha"], B["hb"], B["hc"]
    M = person.camera.Rc @ person.sk.Rh  # head frame -> camera frame
    hc2 = person.p("head")[0]
    # ears behind the head outline unless they face us (then they sit on the head's side)
    ear_after = []
    for name, en in (("ear_l_poly", person.sk.ear_n[0]), ("ear_r_poly", person.sk.ear_n[1])):
        nz = float((person.camera.Rc @ en)[2])
        if nz < -0.25:
            continue
        poly = person.p(name)
        if nz > 0.35:
            ear_after.append(poly)
        else:
            cv.fill(_hull(poly), _mul(look.skin, 0.85), oid)
    h, w = cv.owner.shape
    R = max(a, b, c) * s * 1.02 + 2
    x0, y0 = max(0, int(hc2[0] - R)), max(0, int(hc2[1] - R))
    x1, y1 = min(w, int(hc2[0] + R) + 2), min(h, int(hc2[1] + R) + 2)
    if x1 > x0 and y1 > y0:
        _head_pixels(person, cv, oid, light, M, hc2, (x0, y0, x1, y1))
    for poly in ear_after:
        hull = _hull(poly)
        cv.fill(hull, _mul(look.skin, 0.88), oid)
        ctr = hull.mean(0)
        cv.fill(ctr + (hull - ctr) * 0.5, _mul(look.skin, 0.7), None)
    nose_n = _unit(M @ (_sph(0, -14) / np.array([a, b, c])))
    if nose_n[2] > -0.3:
        np_ = person.p("nose_poly")
        cv.fill(_hull(np_), _mul(look.skin, 0.86 if nose_n[2] < 0.6 else 0.92), oid)
        if nose_n[2] > 0.5:  # nostrils
            for q in np_[1:3]:
                cv.fill(_capsule(q, q, 0.04 * b * s + 0.4, 0.04 * b * s + 0.4), _mul(look.skin, 0.5), None)


def _head_pixels(person, cv: _Canvas, oid: int, light, M, hc2, box) -> None:
    """Shade, colour and alpha-blend the head's pixels inside box; they become owned by oid."""
    B, s, look = person.B, person.s, person.look
    a, b, c = B["ha"], B["hb"], B["hc"]
    x0, y0, x1, y1 = box
    Q = M @ np.diag([1 / a ** 2, 1 / b ** 2, 1 / c ** 2]) @ M.T
    X, Y = np.meshgrid(np.arange(x0, x1, dtype=np.float32) - hc2[0],
                       np.arange(y0, y1, dtype=np.float32) - hc2[1])
    cp, sp = person.R2[0, 0], person.R2[1, 0]
    dx = (cp * X + sp * Y) / s
    dy = -(-sp * X + cp * Y) / s
    A = Q[2, 2]
    Bq = Q[0, 2] * dx + Q[1, 2] * dy
    C = Q[0, 0] * dx * dx + 2 * Q[0, 1] * dx * dy + Q[1, 1] * dy * dy - 1
    disc = Bq * Bq - A * C
    r0 = (a * b * c) ** (1 / 3)
    alpha = np.clip(disc * (r0 ** 3 * 0.5 * s) + 0.5, 0.0, 1.0)
    inside = alpha > 0
    if not inside.any():
        return
    wz = (-Bq + np.sqrt(np.maximum(disc, 0))) / A
    # surface point in the head frame (q = M^T d), as a direction on the unit sphere
    qx = (M[0, 0] * dx + M[1, 0] * dy + M[2, 0] * wz) / a
    qy = (M[0, 1] * dx + M[1, 1] * dy + M[2, 1] * wz) / b
    qz = (M[0, 2] * dx + M[1, 2] * dy + M[2, 2] * wz) / c
    # ellipsoid normal (head frame q / abc^2 -> camera), then into image axes for the light
    nl = (qx / a, qy / b, qz / c)
    nx = M[0, 0] * nl[0] + M[0, 1] * nl[1] + M[0, 2] * nl[2]
    ny = M[1, 0] * nl[0] + M[1, 1] * nl[1] + M[1, 2] * nl[2]
    nz = M[2, 0] * nl[0] + M[2, 1] * nl[1] + M[2, 2] * nl[2]
    lx = cp * light[0] + sp * light[1]  # light rotated into camera axes (x right, y up)
    ly = sp * light[0] - cp * light[1]
    lam = np.clip((nx * lx + ny * ly + nz * light[2]) / (np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-6), 0, 1)
    shade = (0.55 + 0.5 * lam)[..., None]
    az = np.degrees(np.arctan2(qx, qz))
    el = np.degrees(np.arcsin(np.clip(qy, -1, 1)))
    aaz = np.abs(az)
    col = np.empty(qx.shape + (3,), np.float32)
    col[:] = look.skin

    def paint(mask, color) -> None:
        sel = mask > 0
        if not sel.any():
            return
        m = np.minimum(mask[sel], 1.0)[:, None]
        c0 = col[sel]
        col[sel] = c0 + (np.asarray(color, np.float32) - c0) * m

    ppd = s * b * _RAD  # pixels per degree on the face, roughly; softens edges to ~1px
    soft = max(1.0, 1.0 / max(ppd, 1e-3))
    for sgn in (1, -1):
        e = _sph(sgn * _EYE_AZ, _EYE_EL)
        # angular distance from the eye centre; 1 - cos(x) ~ x^2 / 2 is plenty accurate here
        ang = np.sqrt(np.maximum(2.0 * (1.0 - (qx * e[0] + qy * e[1] + qz * e[2])), 0.0)) * (180 / math.pi)
        paint((9.5 - ang) / soft, (245, 245, 240))
        paint((5.2 - ang) / soft, look.iris)
        paint((2.4 - ang) / soft, (15, 12, 12))
        if look.glasses:
            paint(1.0 - np.abs(ang - 13.0) / (1.2 * soft), (30, 30, 30))
        brow = np.minimum(2.6 - np.abs(el - 17.5), 1.0 + np.minimum(sgn * az - 12, 44 - sgn * az))
        paint(brow / soft, _mul(look.hair, 0.9))
    paint(np.minimum(3.2 - np.abs(el + 33), 15 - aaz) / soft, look.lips)
    if look.beard:
        paint(np.minimum((-18 - el) / soft, (75 - aaz) / soft) * 0.85, look.hair)
    style = look.hairstyle
    if style == "hat":
        paint((el - 22) / soft, look.hat)
        line = np.interp(aaz, (0, 60, 100, 130, 180), (90, 90, 12, -25, -45))
        paint(np.minimum(el - line, 21 - el) / soft, look.hair)
    else:
        xs = (0, 30, 55, 80, 100, 115, 130, 180)
        ys = (36, 33, 26, 22, 16, -18, -38, -50) if style != "bald" else \
            (75, 70, 60, 50, 30, 5, -20, -30)
        line = np.interp(aaz, xs, ys)
        if style == "long":
            line = line - 4
        hm = (el - line) / soft
        ear = 1.0 - np.hypot((aaz - 94) / 11, (el + 4) / 15)  # keep ears out of the hair
        hm = np.minimum(hm, 1.0 - ear * 3) if style != "long" else hm
        paint(hm, look.hair)
    col *= shade
    sub = cv.img[y0:y1, x0:x1]
    al = alpha[..., None]
    sub[:] = (sub * (1 - al) + col * al).astype(np.uint8)
    cv.owner[y0:y1, x0:x1][alpha >= 0.5] = oid
