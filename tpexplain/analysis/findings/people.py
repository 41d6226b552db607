"""The people the findings measure: annotated people of a COCO keypoints file (boxes from the annotations or
from COCO detection results), or generated synthetic ones."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...detect.people import iou
from ...io import check_annotation, read_coco, read_detections, read_image
from ...keypoints import COCO_KEYPOINTS, keypoint_order
from ...transforms import clean_bbox

DETECTION_SCORE_MIN = 0.5   # detections below this score are not used (most person detectors' operating point)
DETECTION_IOU_MIN = 0.5     # a detection stands for an annotated person when their boxes overlap this much


@dataclass
class Person:
    """One annotated person: the image, the box the model crops with (ground truth or a detection), and the
    ground-truth keypoints (K, 3) [x, y, v] in the model's keypoint order (v=0 where not labelled)."""

    image: Path
    image_id: int
    annotation_id: int
    bbox: tuple[float, float, float, float]
    keypoints: np.ndarray
    box_source: str = "ground truth"


def _file_names(coco) -> list[str] | None:
    for cat in coco.cats.values():
        if cat.get("keypoints"):
            return [str(n) for n in cat["keypoints"]]
    return None


def detection_boxes(path: str | Path, score_min: float = DETECTION_SCORE_MIN) -> dict[int, list[tuple]]:
    """COCO detection results (`tpexplain.io.read_detections`) → person boxes per image, best first, those
    scoring at least `score_min` (boxes of a pixel or less left out)."""
    out: dict[int, list[tuple]] = {}
    for d in read_detections(path):
        box = tuple(float(v) for v in d["bbox"])
        if d.get("category_id", 1) != 1 or float(d["score"]) < score_min or box[2] <= 1 or box[3] <= 1:
            continue
        out.setdefault(int(d["image_id"]), []).append((float(d["score"]), box))
    for boxes in out.values():
        boxes.sort(key=lambda sb: -sb[0])
    return out


def read_people(annotations: str | Path, images: str | Path, max_people: int | None = None,
                keypoint_names: tuple[str, ...] = COCO_KEYPOINTS, detections: str | Path | None = None,
                skipped: list | None = None) -> list[Person]:
    """People with labelled keypoints in a COCO person-keypoints file (crowd and tiny boxes left out), in
    file order, at most `max_people`, their ground truth in the order of `keypoint_names`.

    With `detections` (COCO detection results, as the official pipelines use), each person is cropped with
    the best-scoring unused detection of its image that overlaps its annotated box by IoU ≥ 0.5 (score ≥
    0.5); a person without one is listed in `skipped` (when given) and left out."""
    ann_path, image_dir = Path(annotations), Path(images)
    if not image_dir.is_dir():
        raise ValueError(f"image folder not found: {image_dir}")
    coco = read_coco(ann_path)
    dets = detection_boxes(detections) if detections is not None else None
    used: set[tuple[int, int]] = set()
    files = {image_id: im.get("file_name") for image_id, im in coco.imgs.items()}
    names = _file_names(coco)
    order = None
    people = []
    for a in coco.loadAnns(coco.getAnnIds()):               # every annotation, in the file's order
        check_annotation(a, str(ann_path))                  # finite numbers in range, before any geometry
        try:
            kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
            image = coco.imgs.get(a.get("image_id"), {})
            # the box as the official loader cleans it (tpexplain eval does the same), when the size is known
            box = a["bbox"] if "width" not in image else clean_bbox(a["bbox"], image["width"], image["height"])
            if box is None:
                continue
            box = tuple(float(v) for v in box)
        except (KeyError, TypeError, ValueError):
            continue
        if a.get("iscrowd", 0) or not len(kp) or not (kp[:, 2] > 0).any():
            continue
        if len(box) != 4 or box[2] <= 1 or box[3] <= 1 or files.get(a.get("image_id")) is None:
            continue
        if order is None:
            order = keypoint_order(names, len(kp), tuple(keypoint_names), str(ann_path))
        if len(kp) != (len(names) if names else len(order)):
            continue
        gt = np.zeros((len(order), 3))
        for j, i in enumerate(order):
            if i >= 0:
                gt[j] = kp[i]
        if not (gt[:, 2] > 0).any():
            continue
        source = "ground truth"
        if dets is not None:
            image_id = int(a["image_id"])
            match = max(((iou(b, box), n, s, b) for n, (s, b) in enumerate(dets.get(image_id, []))
                         if (image_id, n) not in used), default=None)
            if match is None or match[0] < DETECTION_IOU_MIN:
                if skipped is not None:
                    skipped.append({"image": str(image_dir / files[a["image_id"]]), "annotation_id": int(a["id"]),
                                    "reason": f"no detection (score ≥ {DETECTION_SCORE_MIN:g}) overlaps its box "
                                              f"by IoU ≥ {DETECTION_IOU_MIN:g}"})
                continue
            used.add((image_id, match[1]))
            box, source = tuple(match[3]), f"detection (score {match[2]:.2f}, IoU {match[0]:.2f})"
        people.append(Person(image_dir / files[a["image_id"]], int(a["image_id"]), int(a["id"]), box, gt, source))
        if max_people is not None and len(people) >= max_people:
            break
    if not people:
        what = " matched by a detection" if dets is not None else ""
        raise ValueError(f"no person with keypoints{what} in {ann_path}")
    return people


def make_synthetic_people(folder: str | Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """Render `n` images of synthetic people (tpexplain.training.synth) into `folder`; returns the COCO
    annotation file and the image folder, for `read_people`. The same n and seed give the same images."""
    from ...training import synth   # same layer as analysis: imported only when synthetic people are asked for
    return Path(synth.make_dataset(folder, n, seed)), Path(folder) / "images"


def load_image(path: Path, cache: dict) -> np.ndarray:
    """The RGB image at `path`, keeping only the last one read (people come in file order, grouped by image)."""
    if path not in cache:
        cache.clear()
        cache[path] = read_image(path)
    return cache[path]
