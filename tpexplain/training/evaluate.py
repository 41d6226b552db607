"""`tpexplain eval`: COCO keypoint AP (OKS, ground-truth boxes) with pycocotools, plus PCK for visible
and for occluded keypoints separately."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from ..api import PoseModel
from ..io import read_image
from ..progress import track
from ..keypoints import COCO_KEYPOINTS, OKS_SIGMAS, PCK_ALPHA, flip_index



def evaluate(pose_model: PoseModel, annotations: str | Path, images: str | Path, flip: bool = True,
             progress: bool = True) -> dict:
    """AP and PCK of `pose_model` on a COCO person-keypoints file, using its ground-truth boxes.

    The result holds COCO's metrics by name, PCK for visible and occluded keypoints, and `summary`:
    pycocotools' standard summary table as text.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
    results, hits = [], {1: [], 2: []}
    per_kp = []   # (visibility, OKS, swapped) per person, 17 each: where the AP is lost
    image_ids = [i for i in coco.getImgIds() if any(
        a.get("num_keypoints", 0) > 0 for a in coco.loadAnns(coco.getAnnIds(imgIds=i, iscrowd=False)))]
    for image_id in track(image_ids, "eval", "images", enabled=progress):
        info = coco.loadImgs(image_id)[0]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
                if a.get("num_keypoints", 0) > 0]
        image = read_image(Path(images) / info["file_name"])
        poses = pose_model.predict(image, [a["bbox"] for a in anns], flip=flip)
        for ann, kp in zip(anns, poses.keypoints):
            scores = kp[:, 2]
            confident = scores[scores > 0.2]
            results.append({"image_id": image_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                            "score": float(confident.mean()) if len(confident) else 0.0})
            gt = np.array(ann["keypoints"], np.float32).reshape(-1, 3)
            size = max(ann["bbox"][2], ann["bbox"][3])
            dist = np.linalg.norm(kp[:, :2] - gt[:, :2], axis=1)
            for v in (1, 2):
                hits[v] += (dist[gt[:, 2] == v] <= PCK_ALPHA * size).tolist()
            if len(gt) == len(OKS_SIGMAS):
                per_kp.append((gt[:, 2], *score_keypoints(kp, gt, ann["area"], size)))
    if not results:
        raise ValueError(f"no person with keypoints in {annotations}")
    chatter, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(chatter):   # pycocotools narrates every step; keep only the summary
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(out):
        ev.summarize()
    names = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    metrics = {k: float(v) for k, v in zip(names, ev.stats)}
    metrics["summary"] = out.getvalue().rstrip()
    metrics["PCK_visible"] = float(np.mean(hits[2])) if hits[2] else float("nan")
    metrics["PCK_occluded"] = float(np.mean(hits[1])) if hits[1] else float("nan")
    metrics["num_visible"], metrics["num_occluded"] = len(hits[2]), len(hits[1])
    metrics["num_people"] = len(results)
    if per_kp:
        metrics["per_keypoint"] = keypoint_breakdown(per_kp)
    return metrics


def score_keypoints(pred: np.ndarray, gt: np.ndarray, area: float, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Per keypoint of one person: COCO's OKS term, and whether the prediction is a left/right swap
    (nearer the mirror joint's label than its own, and off by more than the PCK radius)."""
    dist = np.linalg.norm(pred[:, :2] - gt[:, :2], axis=1)
    oks = np.exp(-dist ** 2 / (2 * max(area, 1e-9) * (2 * np.array(OKS_SIGMAS)) ** 2))
    mirror = gt[[flip_index(j) for j in range(len(gt))], :2]
    swapped = (np.linalg.norm(pred[:, :2] - mirror, axis=1) < dist) & (dist > PCK_ALPHA * size)
    return oks, swapped


def keypoint_breakdown(per_kp: list) -> dict:
    """Per keypoint type: mean OKS of visible and of occluded labels, share occluded, and the share of
    labels swapped with the mirror joint."""
    vis = np.array([r[0] for r in per_kp]); oks = np.array([r[1] for r in per_kp])
    swap = np.array([r[2] for r in per_kp])

    def mean(x):
        return float(x.mean()) if x.size else float("nan")
    def row(v, o, s):
        return {"oks_visible": mean(o[v == 2]), "oks_occluded": mean(o[v == 1]),
                "occluded_share": mean((v == 1)[v > 0]), "swap_rate": mean(s[v > 0]), "labels": int((v > 0).sum())}
    out = {name: row(vis[:, j], oks[:, j], swap[:, j]) for j, name in enumerate(COCO_KEYPOINTS)}
    out["all"] = row(vis, oks, swap)
    return out


def breakdown_table(per_keypoint: dict) -> str:
    """The per-keypoint breakdown as a fixed-width table."""
    lines = [f"{'keypoint':12s} {'labels':>6s} {'occl.':>6s} {'OKS vis':>8s} {'OKS occ':>8s} {'swapped':>8s}"]
    for name, r in per_keypoint.items():
        lines.append(f"{name:12s} {r['labels']:6d} {r['occluded_share']:6.2f} {r['oks_visible']:8.3f} "
                     f"{r['oks_occluded']:8.3f} {r['swap_rate']:8.3f}")
    return "\n".join(lines)
