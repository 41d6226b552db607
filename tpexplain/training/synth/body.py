"""Body proportions, joint limits and the 3-D skeleton of one person (height 1; x = their left, y = up, z = forward)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tpexplain.keypoints import COCO_KEYPOINTS

# Body part ids inside one person's block of the owner map.
_TORSO, _PELVIS, _NECK, _HEAD, _HAIR_PART = 0, 1, 2, 3, 4
_L_UARM, _L_FARM, _L_HAND, _R_UARM, _R_FARM, _R_HAND = 5, 6, 7, 8, 9, 10
_L_THIGH, _L_SHIN, _L_FOOT, _R_THIGH, _R_SHIN, _R_FOOT = 11, 12, 13, 14, 15, 16
_IDS_PER_PERSON = 32

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

_ELL = np.linspace(0.0, 2.0 * np.pi, 12, endpoint=False)
_ELL_COS, _ELL_SIN = np.cos(_ELL), np.sin(_ELL)
_RAD = math.pi / 180.0


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


def _sph(az: float, el: float) -> np.ndarray:
    a, e = az * _RAD, el * _RAD
    return np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])


_EYE_AZ, _EYE_EL = 31.0, 4.0


def _sample_body(rng: np.random.Generator) -> dict:
    """Proportions of one body, child to adult, slim to broad (lengths in standing heights)."""
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


@dataclass
class _Skeleton:
    """One posed body in its own frame; every named point is a row block of X, for one camera transform."""

    B: dict                     # proportions from _sample_body
    X: np.ndarray               # (N, 3) points; X[idx[name]] are the points called name
    idx: dict[str, slice]
    Rt: np.ndarray              # torso rotation (pitch, lean, twist)
    Rh: np.ndarray              # head rotation
    ear_n: list[np.ndarray]     # outward normals of the left and right ear
    front_n: np.ndarray         # the chest's forward normal

    def facing(self, Rc: np.ndarray) -> np.ndarray:
        """Which keypoints face a camera with rotation Rc (drawing order handles the rest)."""
        ok = np.ones(len(COCO_KEYPOINTS), bool)
        M = Rc @ self.Rh
        abc2 = np.array([self.B["ha"], self.B["hb"], self.B["hc"]]) ** 2
        for k, (az, el, thr) in {0: (0, -14, -0.35), 1: (_EYE_AZ, _EYE_EL, 0.08),
                                 2: (-_EYE_AZ, _EYE_EL, 0.08), 3: (94, -4, -0.25),
                                 4: (-94, -4, -0.25)}.items():
            n = _unit(M @ (_sph(az, el) / np.sqrt(abc2)))
            ok[k] = n[2] > thr
        for k, sgn, R in ((5, 1, self.Rt), (6, -1, self.Rt), (11, 1, np.eye(3)), (12, -1, np.eye(3))):
            ok[k] = (Rc @ R @ np.array([sgn, 0.0, 0.0]))[2] > -0.8
        return ok

    def in_front(self, p: np.ndarray, cdir: np.ndarray) -> bool:
        """Is body-frame point p nearer the camera (toward cdir) than the torso surface on its line of sight?"""
        _, W, D = self.B["levels"][2]
        pl, cl = self.Rt.T @ p, self.Rt.T @ cdir
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


def _skeleton(B: dict, P: dict, hairstyle: str, hair_len: float, rng: np.random.Generator) -> _Skeleton:
    """Pose the body in 3-D (body frame) and name its points; draws one number from rng (the neckline)."""
    pts: dict[str, np.ndarray] = {}
    Rt = _rx(P["pitch"] * _RAD) @ _rz(P["lean"] * _RAD) @ _ry(P["twist"] * _RAD)
    Rhalf = _rx(P["pitch"] * 0.5 * _RAD) @ _rz(P["lean"] * 0.5 * _RAD) @ _ry(P["twist"] * 0.5 * _RAD)
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
        th, shn, foot = (v * m for v in _leg(*P["legs"][0 if side == "l" else 1]))
        hip = np.array([sgn * B["hip_w"], 0.0, 0.0])
        knee = hip + B["thigh"] * th
        ank = knee + B["shin"] * shn
        pts[f"{side}_hip"], pts[f"{side}_knee"], pts[f"{side}_ankle"] = hip, knee, ank
        pts[f"{side}_toe"] = ank + foot * B["foot"] * 0.8 + shn * B["ankle_h"] * 0.6
        pts[f"{side}_heel"] = ank - foot * B["foot"] * 0.2 + shn * B["ankle_h"] * 0.7
    hy, hp, hr = P["hy"] * _RAD, P["hp"] * _RAD, P["hr"] * _RAD
    Rh = Rt @ _ry(hy) @ _rx(hp) @ _rz(hr)
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
    ears, ear_n = [], []
    for sgn in (1.0, -1.0):  # ear discs, roughly sagittal and turned a little forward
        n = np.array([sgn * 0.94, 0.0, 0.34])
        e1, e2 = np.array([0.0, 0.17 * b, 0.0]), np.array([-sgn * 0.34, 0.0, 0.94]) * 0.1 * b
        ctr = np.array([sgn * a * 0.98, -0.04 * b, -0.06 * c])
        ring = ctr + np.outer(_ELL_COS, e1) + np.outer(_ELL_SIN, e2)
        ears.append(hc + ring @ Rh.T)
        ear_n.append(Rh @ n)
    pts["ear_l_poly"], pts["ear_r_poly"] = ears
    if hairstyle == "long":  # hangs with gravity behind the head
        top = [np.array([s * 0.95 * a, 0.15 * b, -0.35 * c]) for s in (1, -1)]
        mid = [np.array([s * 1.02 * a, -0.5 * b, -0.4 * c]) for s in (1, -1)]
        hp_ = [hc + Rh @ p for p in top + mid]
        drop = np.array([0.0, -hair_len * b, 0.0])
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
        (0.0, y4 - 0.004, d4 * 1.02), (0.0, y3 - rng.uniform(0.0, 0.05), d3 * 1.02))])
    front_n = Rt @ np.array([0.0, 0.0, 1.0])
    # flatten everything for one vectorised camera transform
    chunks, idx, n = [], {}, 0
    for k, v in pts.items():
        v = np.atleast_2d(v)
        idx[k] = slice(n, n + len(v))
        n += len(v)
        chunks.append(v)
    return _Skeleton(B, np.concatenate(chunks), idx, Rt, Rh, ear_n, front_n)
