"""The official top-down evaluation's pieces: box cleaning, rescoring, OKS, OKS-NMS, keypoint sets, detections."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..keypoints import COCO_LONG_NAMES, MPII_KEYPOINTS, OKS_SIGMAS, PCK_ALPHA, name_key
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


# Keypoint sets by the names annotation files declare: their OKS sigmas (None: OKS is not defined for them).
KNOWN_SETS: dict[str, tuple[tuple[str, ...], tuple[float, ...] | None]] = {
    "COCO": (COCO_LONG_NAMES, OKS_SIGMAS),
    "CrowdPose": (CROWDPOSE_KEYPOINTS, CROWDPOSE_SIGMAS),
    "MPII": (MPII_KEYPOINTS, None),
}


def declared_keypoints(coco, path: str | Path) -> tuple[tuple[str, ...], str | None, np.ndarray | None]:
    """The keypoints a COCO-format file declares (its person category's names, or by the length of its first
    keypoint list when it names none): (names, the known set's name or None, its OKS sigmas or None)."""
    cats = [c for c in coco.dataset.get("categories", []) if c.get("id") == 1] or coco.dataset.get("categories", [])
    names = tuple(cats[0].get("keypoints") or ()) if cats and isinstance(cats[0], dict) else ()
    if not names:   # no names declared: go by the length of the first keypoint list
        k = next((len(a["keypoints"]) // 3 for a in coco.dataset.get("annotations", []) if "keypoints" in a), 0)
        names = next((n for n, _ in KNOWN_SETS.values() if len(n) == k), tuple(f"keypoint {j}" for j in range(k)))
    keys = [name_key(str(n)) for n in names]
    for set_name, (known, sigmas) in KNOWN_SETS.items():
        if keys == [name_key(n) for n in known]:
            return tuple(map(str, names)), set_name, None if sigmas is None else np.array(sigmas)
    return tuple(map(str, names)), "MPII" if len(names) == 16 else None, None


def check_model_keypoints(names: tuple[str, ...], set_name: str | None, path: str | Path,
                          model_names: tuple[str, ...], model: str) -> None:
    """A one-line ValueError unless `model` predicts the keypoints the file labels, in its order: a ground
    truth is only compared, drawn or queried with the model's own keypoints (every command alike)."""
    keys, own = [name_key(n) for n in names], [name_key(n) for n in model_names]
    if len(own) != len(keys):
        what = f"{set_name}" if set_name else ", ".join(names[:3]) + ", ..."
        raise ValueError(f"{path} declares {len(keys)} keypoints ({what}) but {model} predicts {len(own)}: "
                         f"its ground truth needs a model of the file's keypoints")
    if own != keys:
        j = next(j for j in range(len(keys)) if own[j] != keys[j])
        raise ValueError(f"{path} lists keypoint {j} as {names[j]} but {model} predicts {model_names[j]} there")


def coco_oks(pred: np.ndarray, gt: np.ndarray, area: float, sigmas) -> float | None:
    """COCO's OKS of one prediction (K, 2+) with one person's labels (K, 3): the mean over labelled keypoints
    of exp(-d² / (2 · area · (2σ)²)), as pycocotools computes it; None when nothing is labelled."""
    gt = np.asarray(gt, np.float64)
    labelled = gt[:, 2] > 0
    if not labelled.any():
        return None
    d2 = ((np.asarray(pred, np.float64)[:, :2] - gt[:, :2]) ** 2).sum(1)
    e = d2 / (2 * np.asarray(sigmas, np.float64)) ** 2 / (area + np.spacing(1)) / 2
    return float(np.exp(-e[labelled]).mean())


def pck(pred: np.ndarray, gt: np.ndarray, box) -> float | None:
    """The share of labelled keypoints predicted within PCK_ALPHA x the box's longer side (as `eval`)."""
    gt = np.asarray(gt, np.float64)
    labelled = gt[:, 2] > 0
    if not labelled.any():
        return None
    dist = np.linalg.norm(np.asarray(pred, np.float64)[:, :2] - gt[:, :2], axis=1)
    return float((dist[labelled] <= PCK_ALPHA * max(box[2], box[3])).mean())


def person_accuracy(pred: np.ndarray, gt: np.ndarray, area: float, box, sigmas=None, others=()) -> dict:
    """One predicted person against its labels: OKS (None without sigmas), PCK, the number of labelled
    keypoints, and `closer_to`: the annotation id of another person of the image whose labels the
    prediction fits better than its own (by OKS, by PCK without sigmas), with that fit, or None.

    `others`: (annotation id, keypoints (K, 3), area, box) of the image's other annotated people.
    """
    def fit(g, a, b):
        return coco_oks(pred, g, a, sigmas) if sigmas is not None else pck(pred, g, b)

    own = fit(gt, area, box)
    out = {"oks": _round(coco_oks(pred, gt, area, sigmas)) if sigmas is not None else None,
           "pck": _round(pck(pred, gt, box)), "labelled": int((np.asarray(gt)[:, 2] > 0).sum()),
           "closer_to": None, "closer_fit": None}
    best = own if own is not None else 0.0
    for ann_id, g, a, b in others:
        f = fit(np.asarray(g, np.float64), a, b)
        if f is not None and f > best:
            best, out["closer_to"], out["closer_fit"] = f, ann_id, _round(f)
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)
