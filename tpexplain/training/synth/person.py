"""One person: sampled body, pose, look and camera, placed in the image and drawn in depth order; visibility."""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from tpexplain.keypoints import COCO_KEYPOINTS

from .appearance import _sample_look
from .body import (_HEAD, _IDS_PER_PERSON, _KP_OK, _L_FARM, _L_FOOT, _L_HAND, _L_SHIN, _L_THIGH, _L_UARM, _PELVIS,
                   _R_FARM, _R_FOOT, _R_HAND, _R_SHIN, _R_THIGH, _R_UARM, _TORSO, _sample_body, _skeleton)
from .canvas import _Canvas, _mul, _rand_color
from .head import _head
from .parts import _hair_back, _hand, _neck, _Pen, _skirt, _torso
from .pose import _POSE_P, _POSES, _sample_camera, _sample_pose


class _Person:
    """One figure: samples body, pose, camera and look (in that order), then computes its geometry."""

    def __init__(self, rng: np.random.Generator):
        self.B = _sample_body(rng)
        self.pose = str(rng.choice(_POSES, p=_POSE_P))
        P = _sample_pose(rng, self.pose)
        self.camera = _sample_camera(rng)
        self.look = _sample_look(rng, self.B["age"])
        self.sk = _skeleton(self.B, P, self.look.hairstyle, self.look.hair_len, rng)
        # camera-frame points, unscaled image-plane points (image y down), the image roll
        self.Xc, self.uv, self.R2 = self.camera.project(self.sk.X)
        self.cdir = self.camera.toward()

    def p(self, name: str) -> np.ndarray:
        """The image positions of the points called name (after `place`)."""
        return self.xy[self.sk.idx[name]]

    def z(self, name: str) -> float:
        """Mean camera depth of the points called name (larger is nearer)."""
        return float(self.Xc[self.sk.idx[name], 2].mean())

    def extent(self) -> tuple[float, float, float, float]:
        """Unscaled image-plane box (x0, y0, x1, y1) of the figure with a margin."""
        m = 0.045
        mn, mx = self.uv.min(0) - m, self.uv.max(0) + m
        return float(mn[0]), float(mn[1]), float(mx[0]), float(mx[1])

    def place(self, s: float, tx: float, ty: float) -> None:
        """Scale the figure by s pixels per unit height and shift it by (tx, ty)."""
        self.s = s
        self.xy = self.uv * s + np.array([tx, ty])

    def pixel_box(self, w: int, h: int) -> tuple[int, int, int, int]:
        """A box surely containing everything drawn for this person, clipped to the image."""
        m = max(self.B["r_hip"], self.B["hb"] * 1.05, self.B["r_foot"] * 1.1) * self.s * 1.1 + 3
        mn, mx = self.xy.min(0) - m, self.xy.max(0) + m
        return max(0, int(mn[0])), max(0, int(mn[1])), min(w, int(mx[0]) + 1), min(h, int(mx[1]) + 1)

    def keypoints(self) -> np.ndarray:
        """(17, 2) COCO keypoints in image pixels."""
        return np.stack([self.p(k)[0] for k in COCO_KEYPOINTS])

    def facing(self) -> np.ndarray:
        """Which keypoints face the camera (drawing order handles the rest)."""
        return self.sk.facing(self.camera.Rc)

    def draw(self, cv: _Canvas, base: int, light: np.ndarray) -> None:
        """Paint the placed person into cv in painter's order (group, depth, insertion); owner ids base + part."""
        B, look = self.B, self.look
        lo = light[:2] * 0.3  # image-plane offset of the lit inner shape, in radii
        pen = _Pen(cv, self.s, lo, look.shade, look.skin)
        items: list[tuple[int, float, int, object]] = []  # (group, depth, seq, fn)

        def add(group: int, depth: float, fn) -> None:
            items.append((group, depth, len(items), fn))

        sides = (("l", _L_UARM, _L_FARM, _L_HAND, _L_THIGH, _L_SHIN, _L_FOOT),
                 ("r", _R_UARM, _R_FARM, _R_HAND, _R_THIGH, _R_SHIN, _R_FOOT))
        sleeve = {"none": (0.0, 0.0), "short": (look.sleeve_f, 0.0), "long": (1.0, 1.0),
                  "3q": (1.0, 0.5)}[look.sleeve]
        pants_f = {"trousers": 1.0, "shorts": look.shorts_f, "skirt": 0.0}[look.bottom]
        for side, UA, FA, HA, TH, SH, FT in sides:
            sh, el, wr, hd = (self.p(f"{side}_{n}")[0] for n in ("shoulder", "elbow", "wrist", "hand"))
            X = self.sk.X
            shoe = partial(pen.piece, *(self.p(f"{side}_{n}")[0] for n in ("heel", "toe")),
                           B["r_foot"] * 1.1, B["r_foot"] * 0.85, look.shoes, base + FT)
            bare_shin = look.bottom != "trousers"
            segs = (
                (UA, "shoulder", "elbow", partial(pen.limb, sh, el, B["r_uarm"], B["r_elb"], sleeve[0], look.shirt,
                                                  base + UA, cap_end=sleeve[0] >= 1.0)),
                (FA, "elbow", "wrist", partial(pen.limb, el, wr, B["r_elb"] * 0.95, B["r_wri"],
                                               sleeve[1] * (0.93 if sleeve[1] >= 1 else 1.0), look.shirt,
                                               base + FA, cap_end=False, parent=sh)),
                (HA, "wrist", "hand", partial(_hand, pen, B, wr, hd, base + HA)),
                (TH, "hip", "knee", partial(pen.limb, *(self.p(f"{side}_{n}")[0] for n in ("hip", "knee")),
                                            B["r_hip"], B["r_knee"], pants_f, look.pants, base + TH,
                                            cap_end=pants_f >= 1.0)),
                (SH, "knee", "ankle", partial(pen.limb, *(self.p(f"{side}_{n}")[0] for n in ("knee", "ankle")),
                                              B["r_shin"], B["r_ank"], 0.0 if bare_shin else 1.0, look.pants,
                                              base + SH, sock=look.socks if bare_shin else None,
                                              parent=self.p(f"{side}_hip")[0])),
                (FT, "heel", "toe", shoe),
            )
            for part, a, b_, fn in segs:
                mid = (X[self.sk.idx[f"{side}_{a}"]][0] + X[self.sk.idx[f"{side}_{b_}"]][0]) * 0.5
                depth = float((self.camera.Rc @ mid)[2])
                if part in (_L_UARM, _L_FARM, _L_HAND, _R_UARM, _R_FARM, _R_HAND):
                    depth += 0.01  # arms at the side hang in front of the hips
                add(2 if self.sk.in_front(mid, self.cdir) else 0, depth, fn)
        # torso, neck, long hair, skirt and head
        face_z = float((self.camera.Rc @ self.sk.Rh)[2, 2])
        long_hair = look.hairstyle == "long"
        if long_hair and face_z > 0:
            add(0, -1e9, partial(_hair_back, self, cv, base))
        add(1, 0, partial(_torso, self, pen, base))
        add(1, 1, partial(_neck, self, pen, base))
        if long_hair and face_z <= 0:
            add(1, 2, partial(_hair_back, self, cv, base))
        if look.bottom == "skirt":
            thz = max(self.z("l_knee") + self.z("l_hip"), self.z("r_knee") + self.z("r_hip")) * 0.5
            add(2, thz + 0.005, partial(_skirt, self, cv, base + _PELVIS))
        add(2, self.z("head") + 0.3 * B["hc"], partial(_head, self, cv, base + _HEAD, light))
        for _, _, _, fn in sorted(items, key=lambda t: t[:3]):
            fn()


def _texture(rng: np.random.Generator, cv: _Canvas, box, base: int, person: _Person) -> None:
    """Stripes, checks or grain on garments, applied where the owner map shows those garments."""
    look = person.look
    if look.tex_shirt == 0 and look.tex_pants == 0:
        return
    x0, y0, x1, y1 = box
    own = cv.owner[y0:y1, x0:x1]
    sub = cv.img[y0:y1, x0:x1]
    for tex, parts, color in (
            (look.tex_shirt, [_TORSO] + ([_L_UARM, _R_UARM, _L_FARM, _R_FARM] if look.sleeve == "long" else []),
             look.shirt),
            (look.tex_pants, [_PELVIS] + ([_L_THIGH, _R_THIGH, _L_SHIN, _R_SHIN] if look.bottom == "trousers" else []),
             look.pants)):
        if tex == 0:
            continue
        lut = np.zeros(65536, bool)
        lut[base + np.array(parts)] = True
        ys, xs = np.nonzero(lut[own])  # only the garment's pixels, not the whole box
        if len(ys) == 0:
            continue
        X, Y = xs.astype(np.float32), ys.astype(np.float32)
        period = max(3.0, rng.uniform(0.02, 0.06) * person.s)
        a = person.camera.psi + rng.normal(0, 0.1)
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
