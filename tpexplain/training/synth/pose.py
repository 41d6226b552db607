"""Pose sampling (standing, walking, running, sitting, ... within joint limits) and the camera's view of a person."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .body import _ARM_LIMITS, _LEG_LIMITS, _RAD, _rx, _ry

_VIEWS = ("front", "back", "left", "right")
_POSES = ("standing", "walking", "running", "sitting", "squatting", "arms_raised", "bending", "random")
_POSE_P = (0.25, 0.17, 0.11, 0.10, 0.05, 0.12, 0.08, 0.12)


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


@dataclass
class _Camera:
    """How one person is seen: the view's name, the body-to-camera rotation Rc, and the image roll psi (radians)."""

    view: str
    Rc: np.ndarray
    psi: float

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Body-frame points X -> (camera-frame points, unscaled image-plane points, the 2-D roll matrix)."""
        cam = X @ self.Rc.T  # camera frame: x right, y up, z toward the camera
        c, s = math.cos(self.psi), math.sin(self.psi)
        R2 = np.array([[c, -s], [s, c]])
        uv = cam[:, :2] * np.array([1.0, -1.0])
        return cam, uv @ R2.T, R2  # image-plane y points down

    def toward(self) -> np.ndarray:
        """The direction toward the camera, in the body frame."""
        return self.Rc.T @ np.array([0.0, 0.0, 1.0])


def _sample_camera(rng: np.random.Generator) -> _Camera:
    """Which side of the body faces the camera, the camera's yaw and pitch, and the roll of the image."""
    u = rng.uniform
    r = rng.random()
    if r < 0.42:
        view, yaw = "front", u(-35, 35)
    elif r < 0.62:
        view, yaw = "back", 180 + u(-35, 35)
    elif r < 0.81:
        view, yaw = "left", -90 + u(-30, 30)
    else:
        view, yaw = "right", 90 + u(-30, 30)
    # Camera: yaw about the body's vertical axis, then a little pitch (looking down is common).
    Rc = _rx(u(-10, 20) * _RAD) @ _ry(yaw * _RAD)
    r = rng.random()
    psi = rng.normal(0, 4) if r < 0.72 else u(-45, 45) if r < 0.97 else \
        float(rng.choice((-1, 1))) * u(65, 110)  # rarely lying down
    return _Camera(view, Rc, psi * _RAD)
