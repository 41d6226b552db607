"""`tpexplain eval`: COCO keypoint AP (OKS) with pycocotools as the official TransPose/HRNet validation runs it,
on ground-truth or detector boxes, plus PCK for visible and for occluded keypoints separately."""
from __future__ import annotations

import contextlib
import io
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..api import PoseModel
from ..inference import uses_udp
from ..io import check_annotation, read_coco, read_detections, read_image
from ..keypoints import COCO_KEYPOINTS, COCO_LONG_NAMES, OKS_SIGMAS, PCK_ALPHA, name_key
from ..progress import track
from .oks import (IMAGE_THRE, KNOWN_SETS, OKS_THRE, check_model_keypoints, clean_bbox, declared_keypoints,
                  mirror_index, oks_nms, person_score)

log = logging.getLogger(__name__)

# Keypoint sets with OKS sigmas, by their names as annotation files declare them.
KNOWN_SIGMAS = {name: (names, sigmas) for name, (names, sigmas) in KNOWN_SETS.items() if sigmas is not None}
METRICS = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]


def evaluate(pose_model: PoseModel, annotations: str | Path, images: str | Path, flip: bool = True,
             progress: bool = True, detections: str | Path | None = None) -> dict:
    """AP and PCK of `pose_model` on a COCO-format person-keypoints file, as the official validation.

    People come from the file's boxes (cleaned as the official loader: `clean_bbox`), or with `detections`
    from a COCO detection-results file (person boxes with score >= 0.0). Each person is predicted, scored
    as box score x mean keypoint score above 0.2, and OKS-NMS (0.9) runs per image before pycocotools.
    An image that cannot be read is skipped with a warning, but stays in the evaluation as in official
    COCOeval (its `imgIds`): its annotated people have no prediction and count as not detected, so a
    missing file can only lower AP, never inflate it.

    The result holds COCO's metrics by name, `summary` (pycocotools' summary table as text), the people
    scored, `skipped` (image files not read), `num_annotated` (the annotated people AP covers, all of
    them), `num_unread` (those on skipped images, counted as not detected) and, with ground-truth boxes,
    PCK for visible and occluded keypoints (of the images read) and `per_keypoint` (see `keypoint_breakdown`).
    """
    coco = read_coco(annotations)
    names, sigmas = file_keypoints(coco, annotations, pose_model)
    mirror = mirror_index(names)
    for a in coco.dataset.get("annotations", []):
        check_annotation(a, str(annotations))     # finite numbers in range, before any geometry
        if "area" not in a and "bbox" in a:    # CrowdPose stores no area; its OKS scale is 0.53 x box area
            a["area"] = 0.53 * a["bbox"][2] * a["bbox"][3]
    people = detected_people(coco, detections) if detections else labelled_people(coco, uses_udp(pose_model.model))

    results, skipped, hits, per_kp = [], [], {1: [], 2: []}, []
    for image_id in track(sorted(people), "eval", "images", enabled=progress):
        info = coco.imgs[image_id]
        path = Path(images) / info["file_name"]
        try:
            image = read_image(path)
        except ValueError as e:   # a missing or corrupt image: one warning, the rest still counts
            log.warning("skipped %s", e)
            skipped.append(image_id)
            continue
        boxes, scores, anns = zip(*people[image_id])
        poses = pose_model.predict(image, list(boxes), flip=flip)
        kps = poses.keypoints
        # the official OKS-NMS area: the padded crop box, in pixels
        areas = np.array([float(np.prod(c.scale * 200)) for c in poses.crops])
        person = np.array([person_score(kp[:, 2], s) for kp, s in zip(kps, scores)])
        for i in oks_nms(kps, person, areas, OKS_THRE, sigmas):
            results.append({"image_id": image_id, "category_id": 1, "keypoints": kps[i].reshape(-1).tolist(),
                            "score": float(person[i])})
        for ann, kp in zip(anns, kps):
            if ann is None:
                continue
            gt = np.array(ann["keypoints"], np.float32).reshape(-1, 3)
            size = max(ann["bbox"][2], ann["bbox"][3])
            dist = np.linalg.norm(kp[:, :2] - gt[:, :2], axis=1)
            for v in (1, 2):
                hits[v] += (dist[gt[:, 2] == v] <= PCK_ALPHA * size).tolist()
            per_kp.append((gt[:, 2], *score_keypoints(kp, gt, ann["area"], size, sigmas, mirror)))
    if not results:
        raise ValueError(f"no person predicted on {annotations}"
                         + (f" ({len(skipped)} of {len(people)} images skipped)" if skipped else ""))
    # every image stays in the evaluation, as in COCOeval: a skipped image's people count as not detected
    metrics = coco_metrics(coco, results, sigmas, sorted(coco.getImgIds()))
    metrics["num_people"] = len(results)
    metrics["num_images"] = len(people) - len(skipped)
    metrics["skipped"] = [coco.imgs[i]["file_name"] for i in skipped]
    annotated = evaluated_people(coco)
    metrics["num_annotated"] = len(annotated)
    unread = set(skipped)
    metrics["num_unread"] = sum(a["image_id"] in unread for a in annotated)
    if not detections:
        metrics["PCK_visible"] = float(np.mean(hits[2])) if hits[2] else float("nan")
        metrics["PCK_occluded"] = float(np.mean(hits[1])) if hits[1] else float("nan")
        metrics["num_visible"], metrics["num_occluded"] = len(hits[2]), len(hits[1])
        if per_kp:
            metrics["per_keypoint"] = keypoint_breakdown(per_kp, tuple(name_key(n) for n in names))
    return metrics


def evaluated_people(coco) -> list[dict]:
    """The annotations COCOeval scores keypoint AP against: people (category 1), not crowd, with at least
    one labelled keypoint (the others are ignored by it)."""
    def labelled(a):
        return a.get("num_keypoints", sum(v > 0 for v in (a.get("keypoints") or [])[2::3])) > 0
    return [a for a in coco.dataset.get("annotations", [])
            if a.get("category_id") == 1 and not a.get("iscrowd") and labelled(a)]


def file_keypoints(coco, path: str | Path, pose_model: PoseModel) -> tuple[tuple[str, ...], np.ndarray]:
    """The keypoint names the file declares and their OKS sigmas; ValueError in one line when OKS AP cannot
    be computed for them or `pose_model` predicts other keypoints."""
    names, set_name, sigmas = declared_keypoints(coco, path)
    if set_name == "MPII":
        raise ValueError(f"{path} declares MPII's 16 keypoints: MPII is evaluated with PCKh officially, "
                         f"and OKS AP has no sigmas for it")
    if sigmas is None:
        raise ValueError(f"{path} declares {len(names)} keypoints ({', '.join(names[:3])}, ...): no OKS sigmas "
                         f"are known for them (COCO's 17 and CrowdPose's 14 are)")
    check_model_keypoints(names, set_name, path, tuple(pose_model.keypoint_names), pose_model.name)
    return names, sigmas


def labelled_people(coco, udp: bool = False) -> dict[int, list[tuple[list[float], float, dict]]]:
    """Per image, the labelled people as the official loader keeps them: (clean box, score 1, annotation).

    Crowd annotations, boxes `clean_bbox` drops, annotations of zero area and annotations whose keypoints
    are all zero are left out.
    """
    people = defaultdict(list)
    for image_id in coco.getImgIds():
        info = coco.imgs[image_id]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            box = clean_bbox(ann["bbox"], info["width"], info["height"], udp)   # udp: ViTPose's loader
            if (box is None or ann.get("area", 0) <= 0 or ann.get("category_id") != 1
                    or max(ann.get("keypoints") or [0]) == 0):
                continue
            people[image_id].append((box, 1.0, ann))
    return dict(people)


def detected_people(coco, detections: str | Path) -> dict[int, list[tuple[list[float], float, None]]]:
    """Per image, the person boxes of a COCO detection-results file: (box, detector score, None).

    As the official validation: category 1 with score >= 0.0, boxes as they are (not clipped). Detections
    on images the annotation file does not list are counted in a warning and left out.
    """
    dets = read_detections(detections)
    people, unknown = defaultdict(list), 0
    for d in dets:
        if d.get("category_id", 1) != 1 or d["score"] < IMAGE_THRE:
            continue
        if d["image_id"] not in coco.imgs:
            unknown += 1
            continue
        people[d["image_id"]].append(([float(v) for v in d["bbox"][:4]], float(d["score"]), None))
    if unknown:
        log.warning("%d detections in %s are on images the annotation file does not list: left out",
                    unknown, detections)
    return dict(people)


def coco_metrics(coco, results: list[dict], sigmas: np.ndarray, image_ids: list[int]) -> dict:
    """pycocotools' keypoint metrics of `results` on `image_ids`, by name, and its summary table as text."""
    from pycocotools.cocoeval import COCOeval

    chatter, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(chatter):   # pycocotools narrates every step; keep only the summary
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        ev.params.useSegm = None
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(out):
        ev.summarize()
    metrics = {k: float(v) for k, v in zip(METRICS, ev.stats)}
    metrics["summary"] = out.getvalue().rstrip()
    return metrics


def score_keypoints(pred: np.ndarray, gt: np.ndarray, area: float, size: float,
                    sigmas: np.ndarray | tuple[float, ...] = OKS_SIGMAS,
                    mirror: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per keypoint of one person: COCO's OKS term, and whether the prediction is a left/right swap
    (nearer the mirror joint's label than its own, and off by more than the PCK radius).

    `mirror[j]` is the index of keypoint j's mirror joint (default: COCO's). An unlabelled mirror joint
    (v = 0) is no swap target.
    """
    mirror = mirror_index(COCO_LONG_NAMES) if mirror is None else mirror
    dist = np.linalg.norm(pred[:, :2] - gt[:, :2], axis=1)
    oks = np.exp(-dist ** 2 / (2 * max(area, 1e-9) * (2 * np.asarray(sigmas)) ** 2))
    to_mirror = np.linalg.norm(pred[:, :2] - gt[mirror, :2], axis=1)
    swapped = (to_mirror < dist) & (dist > PCK_ALPHA * size) & (gt[mirror, 2] > 0)
    return oks, swapped


def keypoint_breakdown(per_kp: list, names: tuple[str, ...] = COCO_KEYPOINTS) -> dict:
    """Per keypoint type: mean OKS of visible and of occluded labels, share occluded, and the share of
    labels swapped with the mirror joint."""
    vis = np.array([r[0] for r in per_kp]); oks = np.array([r[1] for r in per_kp])
    swap = np.array([r[2] for r in per_kp])

    def mean(x):
        return float(x.mean()) if x.size else float("nan")
    def row(v, o, s):
        return {"oks_visible": mean(o[v == 2]), "oks_occluded": mean(o[v == 1]),
                "occluded_share": mean((v == 1)[v > 0]), "swap_rate": mean(s[v > 0]), "labels": int((v > 0).sum())}
    out = {name: row(vis[:, j], oks[:, j], swap[:, j]) for j, name in enumerate(names)}
    out["all"] = row(vis, oks, swap)
    return out


def breakdown_table(per_keypoint: dict) -> str:
    """The per-keypoint breakdown as a fixed-width table."""
    lines = [f"{'keypoint':12s} {'labels':>6s} {'occl.':>6s} {'OKS vis':>8s} {'OKS occ':>8s} {'swapped':>8s}"]
    for name, r in per_keypoint.items():
        lines.append(f"{name:12s} {r['labels']:6d} {r['occluded_share']:6.2f} {r['oks_visible']:8.3f} "
                     f"{r['oks_occluded']:8.3f} {r['swap_rate']:8.3f}")
    return "\n".join(lines)
