"""The people the findings measure: annotated people of a COCO keypoints file (boxes from the annotations or
from COCO detection results), or generated synthetic ones."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...io import check_annotation, read_coco, read_image, require_regular_file
from ...keypoints import COCO_KEYPOINTS, name_key
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


def keypoint_order(file_names: list[str] | None, k: int, model_names: tuple[str, ...], where: str) -> list[int]:
    """For each of the model's keypoints, its index in the file's keypoints (-1: the file has no such joint).

    Names are matched by `keypoints.name_key` (left_/l_ alike); a file without keypoint names must have the
    model's count. A file sharing no joint with the model is refused in one line."""
    if not file_names:
        if k != len(model_names):
            raise ValueError(f"{where}: its persons have {k} keypoints and its categories name none; the model "
                             f"predicts {len(model_names)} (COCO's {', '.join(model_names)})")
        return list(range(k))
    keys = [name_key(n) for n in file_names]
    order = [keys.index(name_key(n)) if name_key(n) in keys else -1 for n in model_names]
    if all(i < 0 for i in order):
        raise ValueError(f"{where}: none of its keypoints ({', '.join(file_names)}) is one the model predicts "
                         f"({', '.join(model_names)})")
    return order


def _file_names(coco) -> list[str] | None:
    for cat in coco.cats.values():
        if cat.get("keypoints"):
            return [str(n) for n in cat["keypoints"]]
    return None


def read_detections(path: str | Path, score_min: float = DETECTION_SCORE_MIN) -> dict[int, list[tuple]]:
    """COCO detection results (a JSON list of {image_id, category_id, bbox, score}) → person boxes per image,
    best first, those scoring at least `score_min`; one-line errors for a file that is not such a list."""
    path = require_regular_file(path, "detections file")
    try:
        data = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a COCO detection results file: {path} (not a JSON file: {exc})") from None
    if not isinstance(data, list):
        raise ValueError(f"not a COCO detection results file: {path} (expected a list of detections)")
    out: dict[int, list[tuple]] = {}
    for i, d in enumerate(data):
        try:
            if d.get("category_id", 1) != 1 or float(d["score"]) < score_min:
                continue
            box = tuple(float(v) for v in d["bbox"])
            if len(box) != 4 or not all(np.isfinite(box)) or box[2] <= 1 or box[3] <= 1:
                continue
            out.setdefault(int(d["image_id"]), []).append((float(d["score"]), box))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"{path}: detection {i} is not {{image_id, category_id, bbox, score}}") from None
    for boxes in out.values():
        boxes.sort(key=lambda sb: -sb[0])
    return out


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


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
    dets = read_detections(detections) if detections is not None else None
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
