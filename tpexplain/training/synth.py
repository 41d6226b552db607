"""Procedural people with COCO keypoints, for training and testing pose estimators without COCO.

Each person is a small 3-D articulated body (joint angles within human limits, varied proportions)
seen from a yawed camera and drawn with OpenCV primitives in painter's order: far-side limbs, torso,
neck, then near-side limbs and the head sorted by depth. The head is ray-cast per pixel (an
ellipsoid with hair, eyes, brows, mouth, ears and a nose) so the facing direction, and with it which
side is the person's left, is visible as in a photograph. Every primitive is also drawn into an
integer "owner" map, and a keypoint is visible (v=2) only when the pixels around it are owned by
one of the body parts that meet at that joint after everything (other people, occluders) has been
drawn; otherwise it is labelled but occluded (v=1). Keypoints outside the image get v=0, x=y=0.

Only numpy and cv2 are imported so the module is cheap in data-loader worker processes.
"""
from __future__ import annotations

import colorsys
import gzip
import importlib.util
import json
import math
import os
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from tpexplain.keypoints import COCO_KEYPOINTS, COCO_LONG_NAMES, SKELETON

__all__ = ["render_image", "make_dataset"]

_VIEWS = ("front", "back", "left", "right")
_POSES = ("standing", "walking", "running", "sitting", "squatting", "arms_raised", "bending", "random")
_POSE_P = (0.25, 0.17, 0.11, 0.10, 0.05, 0.12, 0.08, 0.12)

# Body part ids inside one person's block of the owner map.
_TORSO, _PELVIS, _NECK, _HEAD, _HAIR_PART = 0, 1, 2, 3, 4
_L_UARM, _L_FARM, _L_HAND, _R_UARM, _R_FARM, _R_HAND = 5, 6, 7, 8, 9, 10
_L_THIGH, _L_SHIN, _L_FOOT, _R_THIGH, _R_SHIN, _R_FOOT = 11, 12, 13, 14, 15, 16
_IDS_PER_PERSON = 32
_MAX_PEOPLE = 8
_OCCLUDER_BASE = 60000  # owner ids >= this are occluders drawn over people

# The parts that "are" each keypoint: if the top-most pixels there belong to anything else, the
# keypoint is hidden. Hips include the torso because long shirts cover them.
_KP_PARTS: tuple[tuple[int, ...], ...] = (
    (_HEAD,), (_HEAD,), (_HEAD,), (_HEAD,), (_HEAD,),
    (_TORSO, _L_UARM), (_TORSO, _R_UARM),
    (_L_UARM, _L_FARM), (_R_UARM, _R_FARM),
    (_L_FARM, _L_HAND), (_R_FARM, _R_HAND),
    (_PELVIS, _TORSO, _L_THIGH), (_PELVIS, _TORSO, _R_THIGH),
    (_L_THIGH, _L_SHIN), (_R_THIGH, _R_SHIN),
    (_L_SHIN, _L_FOOT), (_R_SHIN, _R_FOOT),
)
_KP_OK = np.zeros((len(COCO_KEYPOINTS), _IDS_PER_PERSON), bool)
for _k, _parts in enumerate(_KP_PARTS):
    _KP_OK[_k, list(_parts)] = True

_SKIN = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96),
                  (160, 104, 70), (120, 76, 50), (86, 56, 38)], np.float32)
_HAIR = np.array([(25, 20, 18), (60, 40, 28), (105, 70, 42), (150, 105, 60), (205, 175, 115),
                  (150, 150, 150), (140, 60, 35), (235, 235, 230)], np.float32)
_HAIR_P = (0.3, 0.22, 0.14, 0.08, 0.1, 0.07, 0.05, 0.04)
_ELL = np.linspace(0.0, 2.0 * np.pi, 12, endpoint=False)
_ELL_COS, _ELL_SIN = np.cos(_ELL), np.sin(_ELL)
_RAD = math.pi / 180.0
_UNIT = {n: np.linspace(0.0, 1.0, n) for n in range(2, 20)}


# ---------------------------------------------------------------------------------------------------
# small geometry helpers

def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-12)


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


def _garment_color(rng: np.random.Generator) -> tuple[int, int, int]:
    if rng.random() < 0.35:  # greys, black, white, denim-ish: common in photos
        v = rng.uniform(0.08, 0.95)
        return _rand_color(rng, (0.0, 0.15), (v, v))
    return _rand_color(rng, (0.3, 1.0), (0.2, 0.95))


def _cdist(a, b) -> float:
    return float(np.abs(np.subtract(a, b, dtype=np.float32)).sum())


# ---------------------------------------------------------------------------------------------------
# bodies and poses (units: standing height = 1; body frame x = person's left, y = up, z = forward)

def _sample_body(rng: np.random.Generator) -> dict:
    age = 1.0 if rng.random() < 0.8 else rng.uniform(0.0, 1.0)  # 0 = small child, 1 = adult

    def lerp(c: float, a: float) -> float:
        return c + (a - c) * age

    u = rng.uniform
    build = u(0.82, 1.3)
    head_h = lerp(0.185, 0.13) * u(0.94, 1.06)
    b = head_h / 2
    B = dict(age=age, build=build, hb=b, ha=b * u(0.7, 0.8), hc=b * u(0.82, 0.9),
             neck_len=lerp(0.03, 0.045) * u(0.85, 1.15), neck_r=0.028 * build ** 0.5 * lerp(0.85, 1.0))
    leg = lerp(0.41, 0.47) * u(0.95, 1.05)
    B.update(thigh=leg * 0.52, shin=leg * 0.48, ankle_h=0.04)
    hip_y = 0.04 + leg
    shoulder_y = 1.0 - head_h - B["neck_len"] * 0.6
    B["torso"] = shoulder_y - hip_y
    B.update(uarm=lerp(0.165, 0.186) * u(0.95, 1.05), farm=lerp(0.135, 0.15) * u(0.95, 1.05),
             hand=lerp(0.085, 0.1), foot=lerp(0.12, 0.145) * u(0.95, 1.05))
    B.update(hip_w=lerp(0.05, 0.06) * u(0.92, 1.12) * build ** 0.3,
             sw=lerp(0.085, 0.1) * u(0.93, 1.08) * build ** 0.25)
    thin = lerp(0.85, 1.0)
    B.update(r_uarm=0.03 * build * thin, r_elb=0.026 * build * thin, r_wri=0.019 * build ** 0.7 * thin,
             r_hand=0.022 * thin, r_hip=0.055 * build * thin, r_knee=0.037 * build ** 0.8 * thin,
             r_shin=0.036 * build ** 0.8 * thin, r_ank=0.022 * thin, r_foot=0.025 * thin)
    belly = u(1.0, 1.35) if build > 1.1 else 1.0
    tl = B["torso"]
    # cross-sections of the torso (height above the hip joints, half width, half depth)
    B["levels"] = (
        (-0.045, B["hip_w"] + B["r_hip"] * 0.85, 0.064 * build),
        (0.42 * tl, 0.084 * build ** 0.9 * u(0.9, 1.05), 0.06 * build * belly),
        (0.74 * tl, B["sw"] * 0.92 + 0.012 * (build - 1), 0.072 * build),
        (tl + 0.014, B["sw"] + 0.008, 0.052 * build),  # shoulder tops: meet the arm's rounded cap
        (tl + 0.05, B["neck_r"] * 1.35, B["neck_r"] * 1.15),
    )
    return B


# joint limits in degrees: arms (flex, abduct, rotate, elbow, wrist), legs (flex, abduct, knee, ankle, toe)
_ARM_LIMITS = ((-60, 180), (-10, 180), (-95, 95), (0, 150), (-30, 45))
_LEG_LIMITS = ((-35, 130), (-15, 50), (0, 150), (-30, 45), (-10, 30))


def _sample_pose(rng: np.random.Generator, kind: str) -> dict:
    """Joint angles in degrees. Arms: (flex, abduct, rotate, elbow, wrist); legs: (flex, abduct,
    knee, ankle, toe-out)."""
    u, nrm = rng.uniform, rng.normal

    def relaxed():
        return [u(-12, 15), u(3, 15), u(0, 40), u(0, 25), u(-10, 20)]

    def stand_leg():
        return [u(-5, 8), u(0, 10), u(0, 12), u(-8, 8), u(0, 12)]

    P = dict(pitch=nrm(3, 4), lean=nrm(0, 3), twist=nrm(0, 6), hy=u(-25, 25), hp=u(-15, 20),
             hr=nrm(0, 5))
    arms, legs = [relaxed(), relaxed()], [stand_leg(), stand_leg()]
    if kind == "standing":
        r = rng.random()
        if r < 0.12:  # arms crossed
            arms = [[u(25, 45), u(5, 20), u(60, 80), u(100, 125), 0] for _ in range(2)]
        else:
            for i in range(2):
                r = rng.random()
                if r < 0.15:  # hand on hip
                    arms[i] = [u(-15, 10), u(35, 55), u(70, 95), u(90, 120), u(0, 20)]
                elif r < 0.3:  # holding something
                    arms[i] = [u(5, 35), u(0, 15), u(0, 40), u(60, 110), u(-10, 20)]
                elif r < 0.38:  # hand behind the back
                    arms[i] = [u(-35, -15), u(0, 10), u(70, 95), u(40, 80), 0]
                elif r < 0.45:  # pointing / reaching forward
                    arms[i] = [u(60, 100), u(0, 25), u(0, 30), u(0, 40), 0]
        if rng.random() < 0.35:  # weight on one leg
            i = int(rng.integers(2))
            legs[i] = [u(0, 10), u(5, 15), u(10, 25), u(-5, 10), u(5, 25)]
    elif kind == "walking":
        ph, amp, amp_a = u(0, 2 * math.pi), u(12, 30), u(0.4, 1.0)
        for i, sgn in ((0, 1), (1, -1)):
            f = 5 + sgn * amp * math.sin(ph)
            legs[i] = [f, u(0, 8), u(10, 45) if f > 5 else u(0, 20), u(-10, 15), u(0, 15)]
            arms[i] = [-sgn * amp * amp_a * math.sin(ph), u(3, 12), u(0, 30), u(10, 40), u(-10, 10)]
        P["pitch"] = u(0, 8)
    elif kind == "running":
        ph, amp, amp_a = u(0, 2 * math.pi), u(30, 60), u(30, 70)
        for i, sgn in ((0, 1), (1, -1)):
            f = 15 + sgn * amp * math.sin(ph)
            legs[i] = [f, u(0, 12), u(30, 90) if f > 15 else u(40, 115), u(-10, 30), u(0, 15)]
            arms[i] = [-sgn * amp_a * math.sin(ph), u(5, 20), u(0, 40), u(70, 110), 0]
        P["pitch"] = u(5, 20)
    elif kind == "sitting":
        for i in range(2):
            legs[i] = [u(70, 100), u(0, 20), u(65, 110), u(-20, 20), u(0, 20)]
            if rng.random() < 0.6:  # hands on the lap
                arms[i] = [u(15, 45), u(0, 15), u(10, 45), u(30, 80), u(-10, 20)]
        P["pitch"] = u(-15, 12)
    elif kind == "squatting":
        for i in range(2):
            legs[i] = [u(85, 125), u(10, 35), u(100, 145), u(-10, 20), u(5, 25)]
            arms[i] = [u(20, 80), u(0, 20), u(0, 30), u(0, 70), 0]
        P["pitch"] = u(10, 45)
    elif kind == "arms_raised":
        style, wave = int(rng.integers(5)), int(rng.integers(2))
        for i in range(2):
            if style == 0 or (style == 4 and i == 0):  # straight up
                arms[i] = [u(140, 180), u(0, 30), u(-20, 20), u(0, 30), 0] if rng.random() < 0.5 \
                    else [u(0, 30), u(140, 175), u(-20, 20), u(0, 30), 0]
            elif style == 1:  # T
                arms[i] = [u(-10, 15), u(75, 100), u(-30, 30), u(0, 25), 0]
            elif style == 2:  # goal post
                arms[i] = [u(-5, 10), u(75, 100), u(-95, -80), u(75, 100), 0]
            elif style == 3 and i == wave:  # waving
                arms[i] = [u(0, 30), u(60, 100), u(-95, -70), u(60, 110), 0]
    elif kind == "bending":
        P["pitch"] = u(35, 95)
        P["hp"] = u(-45, -5)
        for i in range(2):
            legs[i] = [u(-5, 15), u(0, 10), u(0, 30), u(-5, 10), u(0, 20)]
            arms[i] = [P["pitch"] + u(-15, 15), u(0, 20), u(0, 30), u(0, 45), 0]
    else:  # "random": anything within joint limits, for coverage of unusual poses
        for i in range(2):
            arms[i] = [u(-50, 180), u(-5, 160), u(-90, 90), u(0, 150), u(-20, 40)]
            legs[i] = [u(-30, 110), u(-5, 45), u(0, 140), u(-20, 30), u(0, 20)]
        P.update(pitch=u(-10, 50), lean=u(-20, 20), twist=u(-35, 35))
    for limbs, limits in ((arms, _ARM_LIMITS), (legs, _LEG_LIMITS)):
        for g in limbs:
            for j, (lo, hi) in enumerate(limits):
                g[j] = min(max(float(g[j]), lo), hi)
    P["arms"], P["legs"] = arms, legs
    return P


def _arm(flex: float, abd: float, rot: float, bend: float, wrist: float):
    """Upper arm, forearm and hand directions of a left arm (x = outward) from joint angles."""
    R = _rz(abd * _RAD) @ _rx(-flex * _RAD)
    up, f0, m0 = R[:, 1] * -1.0, R[:, 2], -R[:, 0]
    b = math.cos(rot * _RAD) * f0 + math.sin(rot * _RAD) * m0  # the plane the elbow bends in
    fa = math.cos(bend * _RAD) * up + math.sin(bend * _RAD) * b
    hand = _unit(math.cos(wrist * _RAD) * fa + math.sin(wrist * _RAD) * b)
    return up, fa, hand


def _leg(flex: float, abd: float, knee: float, ankle: float, toe: float):
    """Thigh, shin and foot directions of a left leg (x = outward); knees bend backward."""
    R = _rz(abd * _RAD) @ _rx(-flex * _RAD)
    th, f0 = -R[:, 1], R[:, 2]
    k = knee * _RAD
    sh = math.cos(k) * th - math.sin(k) * f0
    f1 = math.cos(k) * f0 + math.sin(k) * th
    foot = math.cos(ankle * _RAD) * f1 + math.sin(ankle * _RAD) * sh
    foot = _ry(toe * _RAD) @ foot
    return th, sh, _unit(foot)


def _sph(az: float, el: float) -> np.ndarray:
    a, e = az * _RAD, el * _RAD
    return np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])


_EYE_AZ, _EYE_EL = 31.0, 4.0


class _Person:
    """One figure: samples body, pose, clothes and viewpoint, then computes its geometry."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        u = rng.uniform
        self.B = _sample_body(rng)
        self.pose = str(rng.choice(_POSES, p=_POSE_P))
        self.P = _sample_pose(rng, self.pose)
        r = rng.random()
        if r < 0.42:
            self.view, yaw = "front", u(-35, 35)
        elif r < 0.62:
            self.view, yaw = "back", 180 + u(-35, 35)
        elif r < 0.81:
            self.view, yaw = "left", -90 + u(-30, 30)
        else:
            self.view, yaw = "right", 90 + u(-30, 30)
        # Camera: yaw about the body's vertical axis, then a little pitch (looking down is common).
        self.Rc = _rx(u(-10, 20) * _RAD) @ _ry(yaw * _RAD)
        r = rng.random()
        psi = rng.normal(0, 4) if r < 0.72 else u(-45, 45) if r < 0.97 else \
            float(rng.choice((-1, 1))) * u(65, 110)  # rarely lying down
        self.psi = psi * _RAD
        self._clothes(rng)
        self._geometry()

    # -- appearance -----------------------------------------------------------------------------
    def _clothes(self, rng: np.random.Generator) -> None:
        u = rng.uniform
        t = u(0, len(_SKIN) - 1)
        i = int(t)
        skin = _SKIN[i] + (_SKIN[min(i + 1, len(_SKIN) - 1)] - _SKIN[i]) * (t - i)
        self.skin = tuple(int(np.clip(c * u(0.93, 1.07), 0, 255)) for c in skin)
        hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * u(0.85, 1.15)
        if self.B["age"] < 0.5 and hair[0] > 140 and hair[1] > 140 and hair[0] - hair[2] < 30:
            hair = _HAIR[2]  # no grey-haired children
        self.hair = tuple(int(np.clip(c, 0, 255)) for c in hair)
        shirt = _garment_color(rng)
        for _ in range(6):  # sleeves must stand out from skin
            if _cdist(shirt, self.skin) > 90:
                break
            shirt = _garment_color(rng)
        pants = _garment_color(rng)
        for _ in range(6):  # and the waist line from the shirt
            if _cdist(pants, shirt) > 110 and _cdist(pants, self.skin) > 60:
                break
            pants = _garment_color(rng)
        self.shirt, self.pants = shirt, pants
        self.shoes = _garment_color(rng) if rng.random() < 0.4 else _rand_color(rng, (0, 0.3), (0.05, 0.3))
        self.sleeve = ("none", "short", "long", "3q")[rng.choice(4, p=(0.12, 0.4, 0.4, 0.08))]
        self.sleeve_f = u(0.3, 0.7)  # where a short sleeve ends along the upper arm
        r = rng.random()
        self.bottom = "trousers" if r < 0.6 else "shorts" if r < 0.8 else "skirt"
        self.shorts_f = u(0.35, 0.85)
        self.skirt_f = u(0.45, 0.9)
        self.long_shirt = rng.random() < 0.3
        self.socks = _garment_color(rng) if rng.random() < 0.3 else None
        r = rng.random()
        self.hairstyle = "short" if r < 0.5 else "long" if r < 0.8 else "bald" if r < 0.88 else "hat"
        self.hat = _garment_color(rng)
        self.hair_len = u(0.5, 1.7)
        self.glasses = rng.random() < 0.1
        self.beard = self.B["age"] > 0.9 and rng.random() < 0.08
        self.iris = tuple(int(c) for c in (_rand_color(rng, (0.3, 0.8), (0.1, 0.45))))
        self.lips = _mul(self.skin, 0.75)
        self.lips = (min(255, self.lips[0] + 40), self.lips[1], self.lips[2])
        self.tex_shirt = int(rng.choice(4, p=(0.6, 0.2, 0.1, 0.1)))  # plain, stripes, checks, noise
        self.tex_pants = int(rng.choice(4, p=(0.75, 0.05, 0.05, 0.15)))
        self.shade = u(0.72, 0.86)

    # -- 3-D skeleton ---------------------------------------------------------------------------
    def _geometry(self) -> None:
        B, P = self.B, self.P
        pts: dict[str, np.ndarray] = {}
        Rt = _rx(P["pitch"] * _RAD) @ _rz(P["lean"] * _RAD) @ _ry(P["twist"] * _RAD)
        Rhalf = _rx(P["pitch"] * 0.5 * _RAD) @ _rz(P["lean"] * 0.5 * _RAD) @ _ry(P["twist"] * 0.5 * _RAD)
        self.Rt = Rt
        tl = B["torso"]
        for side, sgn in (("l", 1.0), ("r", -1.0)):
            m = np.array([sgn, 1.0, 1.0])
            fl, ab, ro, el, wr = P["arms"][0 if side == "l" else 1]
            up, fa, hand = (v * m for v in _arm(fl, ab, ro, el, wr))
            shrug = 0.025 * max(0.0, float(up[1]))
            sh = np.array([sgn * B["sw"], tl + shrug, 0.0])
            elb = sh + B["uarm"] * up
            wri = elb + B["farm"] * fa
            for name, p in (("shoulder", sh), ("elbow", elb), ("wrist", wri),
                            ("hand", wri + B["hand"] * hand)):
                pts[f"{side}_{name}"] = Rt @ p
            pts[f"{side}_elbow_bend"] = np.array([el])
            th, shn, foot = (v * m for v in _leg(*P["legs"][0 if side == "l" else 1]))
            hip = np.array([sgn * B["hip_w"], 0.0, 0.0])
            knee = hip + B["thigh"] * th
            ank = knee + B["shin"] * shn
            pts[f"{side}_hip"], pts[f"{side}_knee"], pts[f"{side}_ankle"] = hip, knee, ank
            pts[f"{side}_toe"] = ank + foot * B["foot"] * 0.8 + shn * B["ankle_h"] * 0.6
            pts[f"{side}_heel"] = ank - foot * B["foot"] * 0.2 + shn * B["ankle_h"] * 0.7
        hy, hp, hr = P["hy"] * _RAD, P["hp"] * _RAD, P["hr"] * _RAD
        Rh = Rt @ _ry(hy) @ _rx(hp) @ _rz(hr)
        self.Rh = Rh
        a, b, c = B["ha"], B["hb"], B["hc"]
        nb = Rt @ np.array([0.0, tl + 0.01, -0.005])
        nt = nb + Rt @ _ry(hy * 0.5) @ _rx(hp * 0.5) @ np.array([0.0, B["neck_len"], 0.0])
        hc = nt + Rh @ np.array([0.0, 0.72 * b, 0.1 * c])
        pts["neck_base"], pts["neck_top"], pts["head"] = nb, nt, hc
        abc = np.array([a, b, c])

        def on_head(az: float, el: float, out: float = 1.0) -> np.ndarray:
            return hc + Rh @ (_sph(az, el) * abc * out)

        pts["nose"] = on_head(0, -14, 1.16)
        pts["l_eye"], pts["r_eye"] = on_head(_EYE_AZ, _EYE_EL), on_head(-_EYE_AZ, _EYE_EL)
        pts["l_ear"], pts["r_ear"] = on_head(94, -4), on_head(-94, -4)
        # nose polygon: bridge, nostrils, and a tip slightly beyond the keypoint so it lies inside
        pts["nose_poly"] = np.stack([on_head(0, 12, 1.0), on_head(9, -20, 1.0), on_head(-9, -20, 1.0),
                                     on_head(0, -18, 1.22), on_head(0, -12, 1.24)])
        ears, self.ear_n = [], []
        for sgn in (1.0, -1.0):  # ear discs, roughly sagittal and turned a little forward
            n = np.array([sgn * 0.94, 0.0, 0.34])
            e1, e2 = np.array([0.0, 0.17 * b, 0.0]), np.array([-sgn * 0.34, 0.0, 0.94]) * 0.1 * b
            ctr = np.array([sgn * a * 0.98, -0.04 * b, -0.06 * c])
            ring = ctr + np.outer(_ELL_COS, e1) + np.outer(_ELL_SIN, e2)
            ears.append(hc + ring @ Rh.T)
            self.ear_n.append(Rh @ n)
        pts["ear_l_poly"], pts["ear_r_poly"] = ears
        if self.hairstyle == "long":  # hangs with gravity behind the head
            top = [np.array([s * 0.95 * a, 0.15 * b, -0.35 * c]) for s in (1, -1)]
            mid = [np.array([s * 1.02 * a, -0.5 * b, -0.4 * c]) for s in (1, -1)]
            hp_ = [hc + Rh @ p for p in top + mid]
            drop = np.array([0.0, -self.hair_len * b, 0.0])
            hp_ += [hp_[2] + drop, hp_[3] + drop, hc + Rh @ np.array([0, b, -0.3 * c])]
            pts["hair_poly"] = np.stack(hp_)
        # torso cross-sections: the first is attached to the pelvis, the waist half-follows the chest
        rings, centers = [], []
        for i, (y, w, d) in enumerate(B["levels"]):
            R = np.eye(3) if i == 0 else Rhalf if i == 1 else Rt
            ctr = R @ np.array([0.0, y, 0.0])
            rings.append(ctr + np.outer(_ELL_COS * w, R[:, 0]) + np.outer(_ELL_SIN * d, R[:, 2]))
            centers.append(ctr)
        # hem of a long shirt, between the hips and the waist (ring 5; unused for short shirts)
        y0, w0, d0 = B["levels"][0]
        y1 = B["levels"][1][0]
        ctr = np.array([0.0, y0 * 0.35 + y1 * 0.65 - 0.05, 0.0])
        rings.append(ctr + np.outer(_ELL_COS * (w0 * 1.04), [1, 0, 0]) + np.outer(_ELL_SIN * d0 * 1.05, [0, 0, 1]))
        # a skirt hangs from the waist of the pelvis, whatever the chest does
        y1, w1, d1 = B["levels"][1]
        rings.append(np.array([0.0, y1 * 0.5, 0.0]) + np.outer(_ELL_COS * w1 * 1.08, [1, 0, 0])
                     + np.outer(_ELL_SIN * d1 * 1.1, [0, 0, 1]))
        pts["rings"] = np.concatenate(rings)
        pts["ring_centers"] = np.stack(centers)
        # V/U neckline on the shirt front: a visible front/back cue
        (y3, _, d3), (y4, w4, d4) = B["levels"][3], B["levels"][4]
        pts["neckline"] = np.stack([Rt @ np.array(p) for p in (
            (w4 * 0.95, y4 - 0.004, d4 * 0.5), (-w4 * 0.95, y4 - 0.004, d4 * 0.5),
            (0.0, y4 - 0.004, d4 * 1.02), (0.0, y3 - self.rng.uniform(0.0, 0.05), d3 * 1.02))])
        self.front_n = Rt @ np.array([0.0, 0.0, 1.0])
        # flatten everything for one vectorised camera transform
        chunks, idx, n = [], {}, 0
        for k, v in pts.items():
            v = np.atleast_2d(v)
            if v.shape[1] != 3:
                continue
            idx[k] = slice(n, n + len(v))
            n += len(v)
            chunks.append(v)
        self.idx = idx
        self.elbow_bend = (pts["l_elbow_bend"][0], pts["r_elbow_bend"][0])
        X = np.concatenate(chunks)
        self.cam = X @ self.Rc.T  # camera frame: x right, y up, z toward the camera
        self.X = X
        c, s = math.cos(self.psi), math.sin(self.psi)
        self.R2 = np.array([[c, -s], [s, c]])
        uv = self.cam[:, :2] * np.array([1.0, -1.0])
        self.uv = uv @ self.R2.T  # unscaled image-plane coordinates, image y down
        self.cdir = self.Rc.T @ np.array([0.0, 0.0, 1.0])  # toward the camera, body frame

    def p(self, name: str) -> np.ndarray:
        return self.xy[self.idx[name]]

    def z(self, name: str) -> float:
        return float(self.cam[self.idx[name], 2].mean())

    def extent(self) -> tuple[float, float, float, float]:
        m = 0.045
        mn, mx = self.uv.min(0) - m, self.uv.max(0) + m
        return float(mn[0]), float(mn[1]), float(mx[0]), float(mx[1])

    def place(self, s: float, tx: float, ty: float) -> None:
        self.s = s
        self.xy = self.uv * s + np.array([tx, ty])

    def pixel_box(self, w: int, h: int) -> tuple[int, int, int, int]:
        """A box surely containing everything drawn for this person, clipped to the image."""
        m = max(self.B["r_hip"], self.B["hb"] * 1.05, self.B["r_foot"] * 1.1) * self.s * 1.1 + 3
        mn, mx = self.xy.min(0) - m, self.xy.max(0) + m
        return max(0, int(mn[0])), max(0, int(mn[1])), min(w, int(mx[0]) + 1), min(h, int(mx[1]) + 1)

    def keypoints(self) -> np.ndarray:
        return np.stack([self.p(k)[0] for k in COCO_KEYPOINTS])

    # -- which keypoints face the camera (drawing order handles the rest) ------------------------
    def facing(self) -> np.ndarray:
        ok = np.ones(len(COCO_KEYPOINTS), bool)
        M = self.Rc @ self.Rh
        abc2 = np.array([self.B["ha"], self.B["hb"], self.B["hc"]]) ** 2
        for k, (az, el, thr) in {0: (0, -14, -0.35), 1: (_EYE_AZ, _EYE_EL, 0.08),
                                 2: (-_EYE_AZ, _EYE_EL, 0.08), 3: (94, -4, -0.25),
                                 4: (-94, -4, -0.25)}.items():
            n = _unit(M @ (_sph(az, el) / np.sqrt(abc2)))
            ok[k] = n[2] > thr
        for k, sgn, R in ((5, 1, self.Rt), (6, -1, self.Rt), (11, 1, np.eye(3)), (12, -1, np.eye(3))):
            ok[k] = (self.Rc @ R @ np.array([sgn, 0.0, 0.0]))[2] > -0.8
        return ok

    # -- depth ordering against the torso --------------------------------------------------------
    def _in_front(self, p: np.ndarray) -> bool:
        """Is body-frame point p nearer the camera than the torso surface along its line of sight?"""
        _, W, D = self.B["levels"][2]
        pl, cl = self.Rt.T @ p, self.Rt.T @ self.cdir
        ylo, yhi = -0.06, self.B["torso"] + 0.04
        A = cl[0] ** 2 / W ** 2 + cl[2] ** 2 / D ** 2
        Bq = 2 * (pl[0] * cl[0] / W ** 2 + pl[2] * cl[2] / D ** 2)
        C = pl[0] ** 2 / W ** 2 + pl[2] ** 2 / D ** 2 - 1
        depth = float(pl @ cl)
        disc = Bq * Bq - 4 * A * C
        if C < 0:  # inside the torso column (thigh tops, elbows tucked in): nearer half is in front
            return depth >= -0.3 * D
        if A < 1e-9 or disc < 0:
            return depth >= 0
        s1, s2 = (-Bq - math.sqrt(disc)) / (2 * A), (-Bq + math.sqrt(disc)) / (2 * A)
        if s2 < 0:
            return True
        if s1 > 0 and ylo <= pl[1] + s1 * cl[1] <= yhi:
            return False
        return depth >= 0

    # -- drawing --------------------------------------------------------------------------------
    def draw(self, cv: _Canvas, base: int, light: np.ndarray) -> None:
        s, B = self.s, self.B
        lo = light[:2] * 0.3  # image-plane offset of the lit inner shape, in radii
        items: list[tuple[int, float, int, object]] = []  # (group, depth, seq, fn)

        def add(group: int, depth: float, fn) -> None:
            items.append((group, depth, len(items), fn))

        def piece(p1, p2, r1, r2, color, oid, cap2=True):
            r1, r2 = r1 * s, r2 * s
            if min(r1, r2) > 1.6:
                outer, inner = _capsule(p1, p2, r1, r2, cap2, lit=lo * (r1 + r2) * 0.5)
            else:  # too thin to show shading
                outer, inner = _capsule(p1, p2, r1, r2, cap2), None
            cv.shaded(outer, inner, color, self.shade, oid)

        def limb(p1, p2, r1, r2, skin_f, garment, oid, cap_end=True, sock=None, parent=None):
            """A segment with skin and a garment covering [0, skin_f] or all of it (skin_f >= 1);
            `parent` (the previous joint) adds a crease on the inside of a bent elbow or knee."""
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

        sides = (("l", _L_UARM, _L_FARM, _L_HAND, _L_THIGH, _L_SHIN, _L_FOOT),
                 ("r", _R_UARM, _R_FARM, _R_HAND, _R_THIGH, _R_SHIN, _R_FOOT))
        sleeve = {"none": (0.0, 0.0), "short": (self.sleeve_f, 0.0), "long": (1.0, 1.0),
                  "3q": (1.0, 0.5)}[self.sleeve]
        pants_f = {"trousers": 1.0, "shorts": self.shorts_f, "skirt": 0.0}[self.bottom]
        for side, UA, FA, HA, TH, SH, FT in sides:
            sh, el, wr, hd = (self.p(f"{side}_{n}")[0] for n in ("shoulder", "elbow", "wrist", "hand"))
            X = self.X
            shoe = partial(piece, *(self.p(f"{side}_{n}")[0] for n in ("heel", "toe")),
                           B["r_foot"] * 1.1, B["r_foot"] * 0.85, self.shoes, base + FT)
            bare_shin = self.bottom != "trousers"
            segs = (
                (UA, "shoulder", "elbow", partial(limb, sh, el, B["r_uarm"], B["r_elb"], sleeve[0], self.shirt,
                                                  base + UA, cap_end=sleeve[0] >= 1.0)),
                (FA, "elbow", "wrist", partial(limb, el, wr, B["r_elb"] * 0.95, B["r_wri"],
                                               sleeve[1] * (0.93 if sleeve[1] >= 1 else 1.0), self.shirt,
                                               base + FA, cap_end=False, parent=sh)),
                (HA, "wrist", "hand", partial(self._hand, cv, wr, hd, base + HA, piece)),
                (TH, "hip", "knee", partial(limb, *(self.p(f"{side}_{n}")[0] for n in ("hip", "knee")),
                                            B["r_hip"], B["r_knee"], pants_f, self.pants, base + TH,
                                            cap_end=pants_f >= 1.0)),
                (SH, "knee", "ankle", partial(limb, *(self.p(f"{side}_{n}")[0] for n in ("knee", "ankle")),
                                              B["r_shin"], B["r_ank"], 0.0 if bare_shin else 1.0, self.pants,
                                              base + SH, sock=self.socks if bare_shin else None,
                                              parent=self.p(f"{side}_hip")[0])),
                (FT, "heel", "toe", shoe),
            )
            for part, a, b_, fn in segs:
                mid = (X[self.idx[f"{side}_{a}"]][0] + X[self.idx[f"{side}_{b_}"]][0]) * 0.5
                depth = float((self.Rc @ mid)[2])
                if part in (_L_UARM, _L_FARM, _L_HAND, _R_UARM, _R_FARM, _R_HAND):
                    depth += 0.01  # arms at the side hang in front of the hips
                add(2 if self._in_front(mid) else 0, depth, fn)
        # torso block
        rings = self.p("rings")
        ctr = self.p("ring_centers")
        n = len(_ELL)

        def band(i: int, j: int, color, oid: int) -> None:
            ri, rj = rings[i * n:(i + 1) * n], rings[j * n:(j + 1) * n]
            outer = _hull(np.concatenate((ri, rj)))
            ci = ctr[min(i, len(ctr) - 1)]
            cj = ctr[min(j, len(ctr) - 1)]
            off = lo * float(np.linalg.norm(ri[0] - ci)) * 0.6
            inner = _hull(np.concatenate((ci + (ri - ci) * 0.7, cj + (rj - cj) * 0.7))) + off
            cv.shaded(outer, inner, color, self.shade, oid)

        def torso() -> None:
            band(0, 1, self.pants, base + _PELVIS)
            for i in (1, 2, 3):
                band(i, i + 1, self.shirt, base + _TORSO)
            if self.long_shirt:
                band(5, 1, self.shirt, base + _TORSO)
            if (self.Rc @ self.front_n)[2] > 0.25 and self.sleeve != "none":
                cv.fill(_hull(self.p("neckline")), _mul(self.skin, 0.95), base + _NECK)

        hc2 = self.p("head")[0]
        face_z = float((self.Rc @ self.Rh)[2, 2])

        def neck() -> None:
            piece(self.p("neck_base")[0], hc2 + (self.p("neck_top")[0] - hc2) * 0.6,
                  B["neck_r"] * 1.1, B["neck_r"], self.skin, base + _NECK)

        def hair_back() -> None:
            cv.fill(_hull(self.p("hair_poly")), _mul(self.hair, 0.8), base + _HAIR_PART)

        long_hair = self.hairstyle == "long"
        if long_hair and face_z > 0:
            add(0, -1e9, hair_back)
        add(1, 0, torso)
        add(1, 1, neck)
        if long_hair and face_z <= 0:
            add(1, 2, hair_back)
        if self.bottom == "skirt":
            thz = max(self.z("l_knee") + self.z("l_hip"), self.z("r_knee") + self.z("r_hip")) * 0.5
            add(2, thz + 0.005, lambda: self._skirt(cv, base + _PELVIS))
        add(2, self.z("head") + 0.3 * B["hc"], lambda: self._head(cv, base + _HEAD, light))
        for _, _, _, fn in sorted(items, key=lambda t: t[:3]):
            fn()

    def _hand(self, cv: _Canvas, wr, tip, oid: int, piece) -> None:
        B = self.B
        r = B["r_hand"]
        mid = wr + (tip - wr) * 0.55
        piece(wr, mid, B["r_wri"] * 1.05, r * 1.15, self.skin, oid)
        piece(mid, tip, r * 1.15, r * 0.75, self.skin, oid)

    def _skirt(self, cv: _Canvas, oid: int) -> None:
        rings = self.p("rings")
        n = len(_ELL)
        pts = [rings[6 * n:7 * n]]
        f = self.skirt_f
        for side in "lr":
            h, k = self.p(f"{side}_hip")[0], self.p(f"{side}_knee")[0]
            q = h + (k - h) * f
            d = _unit(k - h)
            pts.append(q[None] + np.array([[-d[1], d[0]], [d[1], -d[0]]]) * self.B["r_hip"] * 1.35 * self.s)
        outer = _hull(np.concatenate(pts))
        cv.shaded(outer, None, self.pants, self.shade * 1.15, oid)

    def _head(self, cv: _Canvas, oid: int, light: np.ndarray) -> None:
        """Ray-cast the head ellipsoid per pixel: hair, face features, Lambert shading, AA edge."""
        B, s = self.B, self.s
        a, b, c = B["ha"], B["hb"], B["hc"]
        M = self.Rc @ self.Rh  # head frame -> camera frame
        hc2 = self.p("head")[0]
        # ears behind the head outline unless they face us (then they sit on the head's side)
        ear_after = []
        for name, en in (("ear_l_poly", self.ear_n[0]), ("ear_r_poly", self.ear_n[1])):
            nz = float((self.Rc @ en)[2])
            if nz < -0.25:
                continue
            poly = self.p(name)
            if nz > 0.35:
                ear_after.append(poly)
            else:
                cv.fill(_hull(poly), _mul(self.skin, 0.85), oid)
        h, w = cv.owner.shape
        R = max(a, b, c) * s * 1.02 + 2
        x0, y0 = max(0, int(hc2[0] - R)), max(0, int(hc2[1] - R))
        x1, y1 = min(w, int(hc2[0] + R) + 2), min(h, int(hc2[1] + R) + 2)
        if x1 > x0 and y1 > y0:
            self._head_pixels(cv, oid, light, M, hc2, (x0, y0, x1, y1))
        for poly in ear_after:
            hull = _hull(poly)
            cv.fill(hull, _mul(self.skin, 0.88), oid)
            ctr = hull.mean(0)
            cv.fill(ctr + (hull - ctr) * 0.5, _mul(self.skin, 0.7), None)
        nose_n = _unit(M @ (_sph(0, -14) / np.array([a, b, c])))
        if nose_n[2] > -0.3:
            np_ = self.p("nose_poly")
            cv.fill(_hull(np_), _mul(self.skin, 0.86 if nose_n[2] < 0.6 else 0.92), oid)
            if nose_n[2] > 0.5:  # nostrils
                for q in np_[1:3]:
                    cv.fill(_capsule(q, q, 0.04 * b * s + 0.4, 0.04 * b * s + 0.4), _mul(self.skin, 0.5), None)

    def _head_pixels(self, cv: _Canvas, oid: int, light, M, hc2, box) -> None:
        B, s = self.B, self.s
        a, b, c = B["ha"], B["hb"], B["hc"]
        x0, y0, x1, y1 = box
        Q = M @ np.diag([1 / a ** 2, 1 / b ** 2, 1 / c ** 2]) @ M.T
        X, Y = np.meshgrid(np.arange(x0, x1, dtype=np.float32) - hc2[0],
                           np.arange(y0, y1, dtype=np.float32) - hc2[1])
        cp, sp = self.R2[0, 0], self.R2[1, 0]
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
        col[:] = self.skin

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
            paint((5.2 - ang) / soft, self.iris)
            paint((2.4 - ang) / soft, (15, 12, 12))
            if self.glasses:
                paint(1.0 - np.abs(ang - 13.0) / (1.2 * soft), (30, 30, 30))
            brow = np.minimum(2.6 - np.abs(el - 17.5), 1.0 + np.minimum(sgn * az - 12, 44 - sgn * az))
            paint(brow / soft, _mul(self.hair, 0.9))
        paint(np.minimum(3.2 - np.abs(el + 33), 15 - aaz) / soft, self.lips)
        if self.beard:
            paint(np.minimum((-18 - el) / soft, (75 - aaz) / soft) * 0.85, self.hair)
        style = self.hairstyle
        if style == "hat":
            paint((el - 22) / soft, self.hat)
            line = np.interp(aaz, (0, 60, 100, 130, 180), (90, 90, 12, -25, -45))
            paint(np.minimum(el - line, 21 - el) / soft, self.hair)
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
            paint(hm, self.hair)
        col *= shade
        sub = cv.img[y0:y1, x0:x1]
        al = alpha[..., None]
        sub[:] = (sub * (1 - al) + col * al).astype(np.uint8)
        cv.owner[y0:y1, x0:x1][alpha >= 0.5] = oid


# ---------------------------------------------------------------------------------------------------
# scenery: backgrounds, clutter, occluders, camera effects

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
            box = cv2.boxPoints(((x, y), (rw, rh), float(rng.normal(0, 10) if rng.random() < 0.7 else rng.uniform(0, 90))))
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


def _texture(rng: np.random.Generator, cv: _Canvas, box, base: int, person: _Person) -> None:
    """Stripes, checks or grain on garments, applied where the owner map shows those garments."""
    if person.tex_shirt == 0 and person.tex_pants == 0:
        return
    x0, y0, x1, y1 = box
    own = cv.owner[y0:y1, x0:x1]
    sub = cv.img[y0:y1, x0:x1]
    for tex, parts, color in (
            (person.tex_shirt, [_TORSO] + ([_L_UARM, _R_UARM, _L_FARM, _R_FARM] if person.sleeve == "long" else []),
             person.shirt),
            (person.tex_pants, [_PELVIS] + ([_L_THIGH, _R_THIGH, _L_SHIN, _R_SHIN] if person.bottom == "trousers" else []),
             person.pants)):
        if tex == 0:
            continue
        lut = np.zeros(65536, bool)
        lut[base + np.array(parts)] = True
        ys, xs = np.nonzero(lut[own])  # only the garment's pixels, not the whole box
        if len(ys) == 0:
            continue
        X, Y = xs.astype(np.float32), ys.astype(np.float32)
        period = max(3.0, rng.uniform(0.02, 0.06) * person.s)
        a = person.psi + rng.normal(0, 0.1)
        t1 = (X * math.sin(a) + Y * math.cos(a)) / period  # across the body: horizontal stripes
        if tex == 1:
            pat = (np.sin(t1 * (2 * math.pi)) > 0.2).astype(np.float32)
        elif tex == 2:
            t2 = (X * math.cos(a) - Y * math.sin(a)) / period
            pat = ((np.floor(t1) + np.floor(t2)) % 2).astype(np.float32) * 0.7
        else:  # coarse grain: hash of the 2x2 cell, so it is stable and cheap
            cell = (ys // 2) * 7919 + (xs // 2) * 104729 + int(rng.integers(1 << 20))
            pat = ((cell * 2654435761) % 1021).astype(np.float32) / 2042.0
        c2 = np.array(_rand_color(rng) if tex != 3 else _mul(color, 0.6), np.float32)
        k = (pat * rng.uniform(0.35, 0.8))[:, None]
        px = sub[ys, xs].astype(np.float32)
        sub[ys, xs] = (px + (c2 - px) * k).astype(np.uint8)


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


# ---------------------------------------------------------------------------------------------------
# rendering

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
        annots.append(dict(keypoints=_visibility(p, owner, bases[i]), bbox=box, area=area, view=p.view,
                           pose=p.pose))
    return img, annots, owner, dict(bases=[bases[i] for i in range(n) if silhouettes[i][1] > 0],
                                    occluders=n_occ)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


_WIN = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])  # centre is index 4


def _visibility(p: _Person, owner: np.ndarray, base: int) -> np.ndarray:
    """v from the owner map: 2 if the keypoint's pixel and most of its 3x3 neighbourhood show one of
    the parts meeting at that joint (and the joint faces the camera), 1 if not, 0 outside the image."""
    h, w = owner.shape
    kp = p.keypoints()
    out = np.zeros((len(kp), 3), np.float32)
    inside = (kp[:, 0] >= 0) & (kp[:, 0] <= w - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= h - 1)
    if not inside.any():
        return out
    k = np.nonzero(inside)[0]
    xi = np.rint(kp[k, 0]).astype(np.int64)
    yi = np.rint(kp[k, 1]).astype(np.int64)
    ys = np.clip(yi[:, None] + _WIN[:, 0], 0, h - 1)
    xs = np.clip(xi[:, None] + _WIN[:, 1], 0, w - 1)
    rel = owner[ys, xs].astype(np.int64) - base
    ok = (rel >= 0) & (rel < _IDS_PER_PERSON)
    mine = ok & _KP_OK[k[:, None], np.where(ok, rel, 0)]
    vis = p.facing()[k] & mine[:, 4] & (mine.sum(1) >= 4)
    out[k, :2] = kp[k]
    out[k, 2] = np.where(vis, 2.0, 1.0)
    return out


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


def make_dataset(out_dir: str | Path, n: int, seed: int = 0, *, max_people: int = 3) -> Path:
    """Writes out_dir/images/{id:012d}.jpg (quality 95) and out_dir/annotations.json in COCO
    person-keypoints format; returns the annotation path. Image i (id i + 1) uses
    render_image(seed * 1_000_003 + i) so two seeds never share images (for n < 1_000_003). Writes
    atomically (temp file + os.replace) so an interrupted run leaves no half-written annotation file.
    `file_name` in the JSON is relative to out_dir/images."""
    if seed < 0 or n < 0:
        raise ValueError("seed and n must be >= 0")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img, people = render_image(seed * 1_000_003 + i, max_people=max_people)
        iid = i + 1
        name = f"{iid:012d}.jpg"
        ok, enc = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RuntimeError(f"could not encode image {iid}")
        _atomic_write(out / "images" / name, enc.tobytes())
        images.append(dict(id=iid, file_name=name, width=int(img.shape[1]), height=int(img.shape[0])))
        for p in people:
            kp = p["keypoints"]
            anns.append(dict(
                id=len(anns) + 1, image_id=iid, category_id=1, iscrowd=0,
                keypoints=[round(float(v), 2) for v in kp.reshape(-1)],
                num_keypoints=int((kp[:, 2] > 0).sum()),
                bbox=[round(float(v), 2) for v in p["bbox"]], area=round(float(p["area"]), 2),
                view=p["view"], pose=p["pose"]))
    coco = dict(
        info=dict(description="tpexplain synthetic people", generator="tpexplain.synth", seed=seed, n=n,
                  max_people=max_people, image_dir="images"),
        images=images, annotations=anns,
        categories=[dict(id=1, name="person", supercategory="person", keypoints=list(COCO_LONG_NAMES),
                         skeleton=[[a + 1, b + 1] for a, b in SKELETON])])
    path = out / "annotations.json"
    _atomic_write(path, json.dumps(coco, separators=(",", ":")).encode())
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
