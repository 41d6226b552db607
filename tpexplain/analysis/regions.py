"""Body regions on the token grid, from the predicted pose, to say where a dependency map's mass lies.

Relative to a keypoint k, every visual token gets exactly one region, taken in this order of precedence
(the first that claims a token keeps it, so the shares of a map over the regions sum to 1):

    own        within r of k's predicted location
    symmetric  within r of k's mirror joint (l_ankle ↔ r_ankle; empty for a joint on the midline)
    adjacent   within r of a joint joined to k by a bone of the skeleton
    head       within r of a head keypoint (COCO: nose, eyes, ears; MPII: upper neck, head top)
    person     within r of any joint or bone, or inside the torso (shoulders-hips quadrilateral)
    background everything else

Mirror joints, bones and head keypoints are the model's keypoint set's (`Explanation.keypoint_set`).
A token belongs to a disc when its centre does. r defaults to `depth.default_radius` (a tenth of the
person's size, at least one token stride), the same radius the depth metrics use.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..explanation import Explanation
from ..keypoints import SKELETON, KeypointSet
from .depth import default_radius, token_centers

REGIONS = ("own", "symmetric", "adjacent", "head", "person", "background")
TORSO_OUTLINE = ("l_shoulder", "r_shoulder", "r_hip", "l_hip")   # a polygon in drawing order


def neighbours(k: int, skeleton: tuple[tuple[int, int], ...] = SKELETON) -> list[int]:
    """Joints joined to keypoint k by a bone of `skeleton` (COCO's by default)."""
    return sorted({b if a == k else a for a, b in skeleton if k in (a, b)})


def torso_outline(keypoints: KeypointSet) -> tuple[int, ...]:
    """Indices of the shoulders and hips in polygon order (COCO: 5, 6, 12, 11), or () if the set lacks one."""
    if not all(n in keypoints.names for n in TORSO_OUTLINE):
        return ()
    return tuple(keypoints.names.index(n) for n in TORSO_OUTLINE)


def _segment_distance(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    length2 = float(d @ d)
    t = np.zeros_like(px) if length2 == 0 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / length2, 0, 1)
    return np.hypot(px - (a[0] + t * d[0]), py - (a[1] + t * d[1]))


def region_masks(ex: Explanation, keypoint: str | int, radius: float | None = None) -> dict[str, np.ndarray]:
    """Disjoint boolean masks (gh, gw) on the token grid for own, symmetric, adjacent, head, person and
    background, relative to `keypoint` (see the module docstring for the rule)."""
    ks = ex.keypoint_set
    if not ks.skeleton:
        raise ValueError(f"body regions need a known keypoint set (COCO or MPII); {ex.model_name} predicts "
                         f"{len(ex.keypoint_names)} other keypoints")
    k = ex.keypoint(keypoint)
    r = default_radius(ex) if radius is None else float(radius)
    if not r > 0:
        raise ValueError(f"radius must be a positive number of pixels, got {radius}")
    kp = np.asarray(ex.keypoints_crop, dtype=np.float64)
    c = token_centers(ex.layout)
    cx, cy = c[..., 0], c[..., 1]

    def discs(joints) -> np.ndarray:
        m = np.zeros(ex.layout.grid, bool)
        for j in joints:
            if j < len(kp):
                m |= np.hypot(cx - kp[j, 0], cy - kp[j, 1]) <= r
        return m

    mirror = ks.flip_index(k)
    person = discs(range(len(kp)))
    for a, b in ks.skeleton:
        if a < len(kp) and b < len(kp):
            person |= _segment_distance(cx, cy, kp[a], kp[b]) <= r
    torso = torso_outline(ks)
    if torso and max(torso) < len(kp):
        poly = kp[list(torso)].astype(np.float32)
        inside = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0
                           for x, y in zip(cx.ravel(), cy.ravel())]).reshape(cx.shape)
        person |= inside
    candidates = {
        "own": discs([k]),
        "symmetric": discs([mirror]) if mirror != k else np.zeros(ex.layout.grid, bool),
        "adjacent": discs([j for j in neighbours(k, ks.skeleton) if j not in (k, mirror)]),
        "head": discs(ks.head),
        "person": person,
    }
    taken = np.zeros(ex.layout.grid, bool)
    masks = {}
    for name, m in candidates.items():
        masks[name] = m & ~taken
        taken |= m
    masks["background"] = ~taken
    return masks


def region_masses(ex: Explanation, values: np.ndarray, keypoint: str | int,
                  radius: float | None = None) -> dict[str, float]:
    """Share of a token-grid map's mass (renormalised to sum 1) in each region of `region_masks`."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0, None)
    if v.size != ex.layout.num_visual:
        raise ValueError(f"map has {v.size} values; the token grid has {ex.layout.num_visual}")
    v = v.reshape(ex.layout.grid)
    total = v.sum()
    if total <= 0:
        raise ValueError("map has no positive mass")
    return {name: float(v[m].sum() / total) for name, m in region_masks(ex, keypoint, radius).items()}
