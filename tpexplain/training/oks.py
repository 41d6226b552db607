"""The official top-down evaluation protocol's pieces: box cleaning, person rescoring, OKS and OKS-NMS."""
from __future__ import annotations

import numpy as np

from ..keypoints import OKS_SIGMAS, name_key
from ..transforms import clean_bbox  # noqa: F401  (the official box cleaning; re-exported here)

# The official COCO test settings (TransPose and HRNet configs, TEST section).
IMAGE_THRE = 0.0    # detections scoring below this are dropped
IN_VIS_THRE = 0.2   # keypoints scoring above this count towards the person score
OKS_THRE = 0.9      # OKS-NMS drops a person whose OKS with a better-scored one is above this

# CrowdPose's 14 sigmas, as in the official crowdpose-api (COCO's limbs, then head and neck).
CROWDPOSE_SIGMAS: tuple[float, ...] = (
    0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079,
)
CROWDPOSE_KEYPOINTS: tuple[str, ...] = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck",
)


def person_score(keypoint_scores: np.ndarray, box_score: float = 1.0, threshold: float = IN_VIS_THRE) -> float:
    """The official person score: the box score times the mean of the keypoint scores above `threshold`
    (times 0 when none is)."""
    confident = np.asarray(keypoint_scores, np.float64)
    confident = confident[confident > threshold]
    return float(box_score) * (float(confident.mean()) if len(confident) else 0.0)


def oks_overlaps(pose: np.ndarray, others: np.ndarray, area: float, other_areas: np.ndarray,
                 sigmas: tuple[float, ...] | np.ndarray = OKS_SIGMAS) -> np.ndarray:
    """OKS of one predicted pose (K, 2+) with each of `others` (N, K, 2+), as OKS-NMS measures it.

    Unlike COCO's OKS against a label, every keypoint counts and the scale is the mean of the two areas:
    exp(-d² / (2 · (a + b)/2 · (2σ)²)) averaged over the K keypoints.
    """
    others = np.asarray(others, np.float64).reshape(-1, *np.shape(pose))
    var = (2 * np.asarray(sigmas, np.float64)) ** 2
    d2 = ((others[:, :, :2] - np.asarray(pose, np.float64)[None, :, :2]) ** 2).sum(-1)
    scale = (area + np.asarray(other_areas, np.float64)) / 2 + np.spacing(1)
    return np.exp(-d2 / var[None] / scale[:, None] / 2).mean(axis=1)


def oks_nms(poses: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float = OKS_THRE,
            sigmas: tuple[float, ...] | np.ndarray = OKS_SIGMAS) -> list[int]:
    """Greedy OKS non-maximum suppression of one image's people; the indices kept, best score first.

    `poses` (N, K, 2+) in image pixels, `scores` (N,), `areas` (N,) the area of each person's crop box.
    The best-scored person is kept and every other whose OKS with it is above `threshold` is dropped; repeat
    with the rest. Equal scores are visited last index first, as the official `argsort()[::-1]`.
    """
    poses = np.asarray(poses, np.float64)
    areas = np.asarray(areas, np.float64)
    order = np.argsort(np.asarray(scores, np.float64), kind="stable")[::-1]
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        overlap = oks_overlaps(poses[i], poses[rest], areas[i], areas[rest], sigmas)
        order = rest[overlap <= threshold]
    return keep


def mirror_index(names: tuple[str, ...] | list[str]) -> list[int]:
    """For each keypoint, the index of its left/right mirror by name (itself when it has none)."""
    keys = [name_key(n) for n in names]
    swap = {"l_": "r_", "r_": "l_"}
    return [keys.index(swap[k[:2]] + k[2:]) if k[:2] in swap and swap[k[:2]] + k[2:] in keys else j
            for j, k in enumerate(keys)]
