"""Whose pose a single-image command explains: a given box, a ground-truth annotation, or a detected person.

`choose_person` is the one rule every single-image command follows (through `tpexplain.cli.options.prepare`):

- `bbox` given: that box ("--bbox"); with annotations, the ground truth of the annotation it overlaps most
  (IoU >= 0.5), if any.
- annotations given (`coco`, a COCO person-keypoints file; the image is matched by file name): the annotated
  people of the image; `person` is an annotation id or a 1-based index in the file's order; without it, the
  largest annotated person with keypoints. Their ground-truth keypoints come along.
- otherwise the people found by `detect(image)`, numbered by size (1 = largest); `person` is that number;
  without it, the largest. None found is a one-line error asking for --bbox.

Every choice among several is said on the "tpexplain" logger (stderr in the CLI), with the others and how to
pick one of them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..io import read_coco
from .people import SCORE_SCALE, Detection, iou

log = logging.getLogger(__name__)
MATCH_IOU = 0.5          # a --bbox takes the ground truth of an annotation it overlaps at least this much


@dataclass
class Person:
    """The person chosen: box (x, y, w, h image pixels), how to name it, and its ground truth if annotated."""

    box: tuple[float, float, float, float]
    label: str                                   # "detection 1 of 3", "annotation 183126", "--bbox"
    ground_truth: np.ndarray | None = None       # (K, 3) x, y, v (COCO; v = 0 unlabelled)
    annotation: dict | None = field(default=None, repr=False)     # its COCO annotation (id, area, bbox, ...)
    others: list[dict] = field(default_factory=list, repr=False)  # the image's other annotated people
    order: list[int] | None = field(default=None, repr=False)     # model joint j is the file's order[j] (-1: none)
    sigmas: tuple[float, ...] | None = field(default=None, repr=False)   # the file's OKS sigmas in that order


def box_text(box) -> str:
    """'x,y,w,h' in whole pixels, as --bbox takes it."""
    return ",".join(f"{float(v):.0f}" for v in box)


def ground_truth(ann: dict, order: list[int] | None = None) -> np.ndarray | None:
    """An annotation's keypoints as (K, 3), or None when none is labelled; with `order` (the file's index of
    each of the model's joints, -1 for none: `keypoints.keypoint_order`), in the model's order."""
    kp = np.asarray(ann.get("keypoints") or [], dtype=np.float64)
    if kp.size == 0 or kp.size % 3:
        return None
    kp = kp.reshape(-1, 3)
    if order is not None:
        kp = np.array([kp[i] if 0 <= i < len(kp) else (0.0, 0.0, 0.0) for i in order], np.float64).reshape(-1, 3)
    return kp if (kp[:, 2] > 0).any() else None


def image_annotations(coco_path: str | Path, image_path: str | Path) -> list[dict]:
    """The person annotations (not crowds, with a box) of the image whose file name is `image_path`'s, in file
    order; a one-line ValueError when the file does not list that image."""
    coco = read_coco(coco_path)
    name = Path(image_path).name
    ids = [i for i, info in coco.imgs.items() if Path(str(info.get("file_name", ""))).name == name]
    if not ids:
        raise ValueError(f"{coco_path} lists no image named {name} (images are matched by file name)")
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=ids[0]))
            if not a.get("iscrowd", 0) and len(a.get("bbox") or []) == 4 and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    if not anns:
        raise ValueError(f"{coco_path} has no person box for {name}; give --bbox X,Y,W,H")
    return anns


def _others(anns: list[dict], chosen: dict) -> list[dict]:
    return [a for a in anns if a is not chosen]


def _from_annotations(anns: list[dict], person: str | None, coco_path) -> Person:
    described = "; ".join(f"{i}: annotation {a.get('id')} box {box_text(a['bbox'])}"
                          f"{'' if ground_truth(a) is not None else ' (no keypoints)'}"
                          for i, a in enumerate(anns, 1))
    if person is not None:
        try:
            n = int(str(person).strip())
        except ValueError:
            raise ValueError(f"--person '{person}': give an annotation id or an index 1..{len(anns)} "
                             f"({described})") from None
        by_id = [a for a in anns if a.get("id") == n]
        if by_id:
            chosen = by_id[0]
        elif 1 <= n <= len(anns):
            chosen = anns[n - 1]
        else:
            raise ValueError(f"--person {n} is neither an annotation id of this image nor an index 1..{len(anns)} "
                             f"({described})")
    else:
        labelled = [a for a in anns if ground_truth(a) is not None] or anns
        chosen = max(labelled, key=lambda a: a["bbox"][2] * a["bbox"][3])
        if len(anns) > 1:
            log.info(f"{len(anns)} annotated people in {Path(coco_path).name}; explaining the largest with keypoints, "
                     f"annotation {chosen.get('id')}. All: {described}. Pick one with --person ID or INDEX.")
    return Person(tuple(float(v) for v in chosen["bbox"]), f"annotation {chosen.get('id')}", ground_truth(chosen),
                  chosen, _others(anns, chosen))


def _from_detections(found: list[Detection], person: str | None, image_name: str) -> Person:
    if not found:
        raise ValueError(f"no person found in {image_name} (the detector finds upright people of a fair size "
                         "only); give the person's box with --bbox X,Y,W,H")
    found = sorted(found, key=lambda d: -d.area)         # numbered by size: 1 is the largest
    n = len(found)
    if person is not None:
        try:
            i = int(str(person).strip())
        except ValueError:
            i = 0
        if not 1 <= i <= n:
            raise ValueError(f"--person {person}: {n} {'person' if n == 1 else 'people'} found in {image_name} "
                             f"(1..{n}, by size)")
    else:
        i = 1
    chosen = found[i - 1]
    what = f"box {chosen.label()} ({chosen.source}, score {chosen.score:.2f})"
    scale = f"Scores: {SCORE_SCALE}; the detector misses many people (docs/usage.md)."
    if n == 1:
        log.info(f"1 person found in {image_name}: {what}. {scale}")
    else:
        others = "; ".join(f"{j}: box {d.label()} ({d.source}, score {d.score:.2f})"
                           for j, d in enumerate(found, 1) if j != i)
        how = "" if person is not None else ", the largest"
        log.info(f"{n} people found in {image_name}; explaining person {i}{how}: {what}. "
                 f"Others: {others}. Pick one with --person N or --bbox X,Y,W,H. {scale}")
    return Person(chosen.box, f"detection {i} of {n}")


def choose_person(image: np.ndarray, image_path: str | Path, bbox: tuple | None = None,
                  coco: str | Path | None = None, person: str | None = None,
                  detect: Callable[[np.ndarray], list[Detection]] | None = None) -> Person:
    """The person a single-image command explains (the rule is in the module docstring).

    `image` is the image read (RGB), `image_path` its file (its name matches the annotations), `bbox` a box
    already checked against the image, `coco` an annotation file, `person` the --person value, and `detect`
    the detector run when neither a box nor annotations are given (`tpexplain.api.detect_people`).
    """
    name = Path(image_path).name
    if bbox is not None:
        if person is not None:
            raise ValueError("--person picks among the detected or annotated people; not with --bbox")
        if coco is None:
            return Person(tuple(bbox), "--bbox")
        anns = image_annotations(coco, image_path)
        best = max(anns, key=lambda a: iou(bbox, a["bbox"]))
        if iou(bbox, best["bbox"]) < MATCH_IOU:
            log.info(f"--bbox overlaps no annotated person of {name} (IoU >= {MATCH_IOU}): no ground truth")
            return Person(tuple(bbox), "--bbox")
        log.info(f"--bbox matches annotation {best.get('id')} (box {box_text(best['bbox'])}): its ground truth is used")
        return Person(tuple(bbox), f"--bbox (annotation {best.get('id')})", ground_truth(best), best,
                      _others(anns, best))
    if coco is not None:
        return _from_annotations(image_annotations(coco, image_path), person, coco)
    if detect is None:
        raise ValueError("no person box: give --bbox X,Y,W,H")
    return _from_detections(detect(image), person, name)
