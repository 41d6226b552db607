"""The people the findings measure: annotated people of a COCO keypoints file, or generated synthetic ones."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...io import check_annotation, read_coco, read_image
from ...keypoints import COCO_KEYPOINTS
from ...transforms import clean_bbox


@dataclass
class Person:
    """One annotated person: where the image is, its ground-truth box and keypoints (17, 3) [x, y, v]."""

    image: Path
    image_id: int
    annotation_id: int
    bbox: tuple[float, float, float, float]
    keypoints: np.ndarray


def read_people(annotations: str | Path, images: str | Path, max_people: int | None = None) -> list[Person]:
    """People with labelled keypoints in a COCO person-keypoints file (crowd and tiny boxes left out), in
    file order, at most `max_people`."""
    ann_path, image_dir = Path(annotations), Path(images)
    if not image_dir.is_dir():
        raise ValueError(f"image folder not found: {image_dir}")
    coco = read_coco(ann_path)
    files = {image_id: im.get("file_name") for image_id, im in coco.imgs.items()}
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
        if a.get("iscrowd", 0) or len(kp) != len(COCO_KEYPOINTS) or not (kp[:, 2] > 0).any():
            continue
        if len(box) != 4 or box[2] <= 1 or box[3] <= 1 or files.get(a.get("image_id")) is None:
            continue
        people.append(Person(image_dir / files[a["image_id"]], int(a["image_id"]), int(a["id"]), box, kp))
        if max_people is not None and len(people) >= max_people:
            break
    if not people:
        raise ValueError(f"no person with keypoints in {ann_path}")
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
