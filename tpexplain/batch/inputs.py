"""Who a batch explains (a folder's images, a COCO file's people or detections) and what it leaves out."""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm")


@dataclass(frozen=True)
class Truth:
    """A person's ground truth from an annotation file, and the other annotated people of its image (to tell
    when a prediction fits one of them better than its own)."""

    annotation: int | str
    keypoints: tuple[tuple[float, float, float], ...]   # (K, 3) x, y, v in image pixels; v = 0 unlabelled
    area: float                                           # the OKS scale
    bbox: tuple[float, float, float, float]               # the annotated box (PCK's scale)
    sigmas: tuple[float, ...] | None = None               # the file's OKS sigmas (None: unknown set, no OKS)
    others: tuple = ()                # (annotation, keypoints, area, bbox or None with sigmas) of the others

    def digest(self) -> str:
        """A short hash of everything the figures and numbers depend on: changed labels redo the person."""
        return hashlib.sha256(json.dumps([self.annotation, self.keypoints, self.area, self.bbox, self.sigmas,
                                          self.others], default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Item:
    """One person to explain: an image file and a box (x, y, w, h); no box means the whole image."""

    image: str
    person: str                                   # "image", "box3", "ann442619", "det12", ...
    bbox: tuple[float, float, float, float] | None = None
    name: str | None = None                       # output stem, when the derived one would collide
    truth: Truth | None = None                    # the annotated ground truth, when there is one
    score: float | None = None                    # a detection's score

    @property
    def label(self) -> str:
        """The person as figure titles name it: "annotation 442619", "detection 12 (score 0.98)", "box 1"."""
        p = self.person
        if p.startswith("ann"):
            return f"annotation {p[3:]}"
        if p.startswith("det"):
            matched = f", annotation {self.truth.annotation}" if self.truth else ""
            return f"detection {p[3:]} (score {self.score:.2f}{matched})"
        if p.startswith("box"):
            return f"box {int(p[3:]) + 1}"
        return "whole image"

    @property
    def ground_truth(self):
        """The ground truth as a (K, 3) array (x, y, v in image pixels), or None."""
        if self.truth is None:
            return None
        import numpy as np
        return np.array(self.truth.keypoints, np.float64)

    def dress(self, ex, model: str) -> None:
        """Tell an Explanation of this person which image, person and model it is, and its ground truth; a
        prediction that fits another annotated person better than its own says so in the person's label."""
        person = self.label
        if self.truth is not None:
            ex.ground_truth = self.ground_truth
            ex.meta["accuracy"] = self.accuracy(ex.keypoints)     # OKS/PCK in the side files' `about`
            other = ex.meta["accuracy"]["closer_to"]
            if other is not None:
                person += f" (prediction closer to annotation {other})"
        ex.meta.update(image=Path(self.image).name, person=person, model=model)

    def accuracy(self, keypoints) -> dict | None:
        """The prediction `keypoints` (K, 2+) against the ground truth: OKS, PCK and whether it fits another
        annotated person of the image better (`training.oks.person_accuracy`); None without ground truth."""
        if self.truth is None:
            return None
        from ..training.oks import person_accuracy
        t = self.truth
        return {"annotation": t.annotation, **person_accuracy(keypoints, t.keypoints, t.area, t.bbox, t.sigmas,
                                                              t.others)}

    @property
    def key(self) -> str:
        """The stem of this person's output files."""
        if self.name:
            return self.name
        stem = safe_name(Path(self.image).stem)
        return stem if self.person == "image" else f"{stem}_{self.person}"


@dataclass(frozen=True)
class Skip:
    """An image or annotation of the input that is not explained, and why ("crowd", "no labelled people")."""

    image: str
    person: str                                   # "image" for a whole image, "ann183126" for an annotation
    reason: str


class Items(list):
    """The people to explain (a list of `Item`), with `skipped`: the input's images and annotations left out."""

    def __init__(self, items=(), skipped=()):
        super().__init__(items)
        self.skipped: list[Skip] = list(skipped)


def folder_items(folder: str | Path, boxes: str | Path | None = None, whole: bool = False,
                 progress: bool = True) -> Items:
    """The people in `folder`'s images: those a boxes file lists, else those the person detector finds
    (`tpexplain.detect`, every person it finds), else, with `whole`, every image taken whole. An image
    without boxes or without a person found is listed as skipped.

    A boxes file is JSON ({"img.jpg": [[x, y, w, h], ...], ...}) or CSV (image,x,y,w,h per line, with or
    without a header); image names are relative to `folder`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if boxes is None:
        if not files:
            raise ValueError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
        if whole:
            return _unique([Item(str(p), "image") for p in files])
        return _detected_items(files, progress)
    from ..io import finite_box
    items = []
    for name, bxs in _read_boxes(boxes).items():
        for i, b in enumerate(bxs):
            items.append(Item(str(folder / name), f"box{i}", finite_box(b, f"{boxes}: {name} box {i + 1}")))
    if not items:
        raise ValueError(f"no boxes in {boxes}")
    boxed = {Path(it.image) for it in items}
    return _unique(items, [Skip(str(p), "image", "no box in the boxes file") for p in files if p not in boxed])


def _detected_items(files: list[Path], progress: bool) -> Items:
    """Every person the detector finds in `files`, numbered by size in each image (det1 = the largest)."""
    from ..detect.people import find_people
    from ..io import read_image
    from ..progress import track
    items, skipped = [], []
    for path in track(files, "finding people", "image", enabled=progress):
        try:
            found = find_people(read_image(path))
        except (OSError, ValueError):
            # taken whole, so that it fails in a worker with its reading error like any other image that
            # cannot be read: counted as failed (exit status 1), and retried on the next run
            items.append(Item(str(path), "image"))
            continue
        if not found:
            skipped.append(Skip(str(path), "image", "no person found (give --boxes)"))
        found = sorted(found, key=lambda d: -d.area)
        items += [Item(str(path), f"det{i}", d.box, score=d.score) for i, d in enumerate(found, 1)]
    return _unique(items, skipped)


def coco_items(annotations: str | Path, images: str | Path, keypoint_names: tuple[str, ...] | None = None,
               detections: str | Path | None = None, min_score: float = 0.0) -> Items:
    """Every person instance with labelled keypoints (not crowds), its bbox as the box and its labels as the
    ground truth; every other annotation, and every image without one, is listed in `skipped` with why.

    With `detections` (COCO detection results), the people are the detections of category 1 scoring at
    least `min_score` on the file's images, as the official pipelines take them; each is given the ground
    truth of the annotated person it overlaps most (IoU >= 0.5, best scores first), if any. With
    `keypoint_names` (the model's), the ground truth is in the model's order, its joints matched to the
    file's by name (`findings` alike); a file sharing no joint with the model is refused in one line.
    """
    from ..io import check_annotation, read_coco
    from ..training.oks import declared_keypoints
    annotations, images = Path(annotations), Path(images)
    if not images.is_dir():
        raise ValueError(f"image folder not found: {images}")
    coco = read_coco(annotations)
    try:
        files = {image_id: im["file_name"] for image_id, im in coco.imgs.items()}
        anns = coco.loadAnns(coco.getAnnIds())            # every annotation, in the file's order
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ValueError(f"not a COCO annotation file: {annotations} ({exc})") from None
    names, _, sigmas = declared_keypoints(coco, annotations)
    order = list(range(len(names)))     # the model's keypoint j is the file's order[j] (-1: not in the file)
    if keypoint_names is not None:      # matched by name, as `findings` does (CrowdPose's 14 with COCO's 17)
        from ..keypoints import keypoint_order
        order = keypoint_order(list(names), len(names), tuple(keypoint_names), str(annotations))
    sigmas = tuple(float(sigmas[i]) if i >= 0 else 1.0 for i in order) if sigmas is not None else None
    for image_id, file_name in files.items():   # output names are built from these: plain names only
        _check_name(file_name, f"{annotations}: image {image_id!r}: file_name")
    people, skipped = [], []        # people: (image_id, annotation, box)
    for a in anns:
        check_annotation(a, str(annotations))      # finite numbers in range, before any geometry
        _check_name(a.get("id"), f"{annotations}: annotation {a.get('id')!r}: id")
        person = f"ann{a['id']}"
        kp = a.get("keypoints") or []
        ours = [kp[3 * i + 2] if i >= 0 and 3 * i + 2 < len(kp) else 0 for i in order]
        reason = ("its image_id is not among the file's images" if a.get("image_id") not in files else
                  "crowd" if a.get("iscrowd", 0) else
                  f"not a person (category_id {a['category_id']})" if a.get("category_id", 1) != 1 else
                  "annotation without keypoints" if not any(v > 0 for v in kp[2::3]) else
                  f"{len(kp) // 3} keypoints where the file declares {len(names)}" if len(kp) != 3 * len(names)
                  else "none of its labelled keypoints is one the model predicts" if not any(v > 0 for v in ours)
                  else "no box" if "bbox" not in a else
                  "empty box" if a["bbox"][2] <= 0 or a["bbox"][3] <= 0 else None)
        if reason:
            image = str(images / files[a["image_id"]]) if a.get("image_id") in files else str(a.get("image_id"))
            skipped.append(Skip(image, person, reason))
        else:
            people.append((a["image_id"], a, tuple(float(v) for v in a["bbox"])))
    truths = _truths(people, sigmas, order)
    if detections is not None:
        items, missed = _detection_items(detections, min_score, files, images, people, truths)
        skipped += missed
    else:
        items = [Item(str(images / files[i]), f"ann{a['id']}", box, truth=truths[a["id"]]) for i, a, box in people]
    seen = {Path(it.image) for it in items} | {Path(s.image) for s in skipped}
    skipped += [Skip(str(images / f), "image", "no labelled people" if detections is None else
                     f"no detection scoring at least {min_score:g}")
                for f in files.values() if images / f not in seen]
    if not items:
        raise ValueError(f"no person annotations with keypoints in {annotations}" if detections is None else
                         f"no person detection scoring at least {min_score:g} on {annotations}'s images in "
                         f"{detections}")
    return _unique(items, skipped)


def _truths(people: list, sigmas: tuple[float, ...] | None, order: list[int]) -> dict:
    """Each annotated person's Truth in the model's keypoint order, with the other annotated people of its
    image."""
    def labels(a):
        kp = [float(v) for v in a["keypoints"]]
        return tuple(tuple(kp[3 * i:3 * i + 3]) if i >= 0 else (0.0, 0.0, 0.0) for i in order)

    def area(a, box):   # CrowdPose stores no area: its OKS scale is 0.53 x the box area, as in `eval`
        return float(a["area"]) if "area" in a else 0.53 * box[2] * box[3]
    by_image: dict = {}
    for i, a, box in people:
        by_image.setdefault(i, []).append((a["id"], labels(a), area(a, box), box))
    truths = {}
    for image_people in by_image.values():
        for ann, kp, ar, box in image_people:
            # another person's box only counts without OKS sigmas (PCK's scale): with them, a neighbour's
            # changed box changes nothing of this person
            others = tuple((o, okp, oar, obox if sigmas is None else None)
                           for o, okp, oar, obox in image_people if o != ann)
            truths[ann] = Truth(ann, kp, ar, box, sigmas, others)
    return truths


def _detection_items(path, min_score: float, files: dict, images: Path, people: list, truths: dict):
    """The detections taken as people (matched to the annotated people by IoU), and the annotated people no
    detection matched."""
    from ..analysis.findings.people import iou     # one IoU, the one findings matches detections with
    from ..io import read_detections
    dets = read_detections(path)
    kept, below, elsewhere = [], 0, 0
    for n, d in enumerate(dets):
        if d.get("category_id", 1) != 1:
            continue
        if d["image_id"] not in files:
            elsewhere += 1
        elif d["score"] < min_score:
            below += 1
        else:
            kept.append((n, d))
    if below or elsewhere:
        log.info(f"{path}: left out {below} person detection{'s' if below != 1 else ''} scoring below "
                 f"{min_score:g}" + (f" and {elsewhere} on images the annotation file does not list"
                                     if elsewhere else ""))
    matched: dict = {}               # detection number -> annotation id
    taken: set = set()
    for n, d in sorted(kept, key=lambda nd: -nd[1]["score"]):
        candidates = [(iou(d["bbox"], box), a["id"]) for i, a, box in people
                      if i == d["image_id"] and a["id"] not in taken]
        best = max(candidates, default=(0.0, None))
        if best[0] >= 0.5:
            matched[n] = best[1]
            taken.add(best[1])
    items = [Item(str(images / files[d["image_id"]]), f"det{n}", tuple(float(v) for v in d["bbox"]),
                  truth=truths.get(matched.get(n)), score=float(d["score"])) for n, d in kept]
    missed = [Skip(str(images / files[i]), f"ann{a['id']}", "no detection matched it (IoU >= 0.5)")
              for i, a, _ in people if a["id"] not in taken]
    return items, missed


def _check_name(value, what: str) -> None:
    """A one-line ValueError if an id or file name is not a plain name (a path with /, \\ or .., absolute)."""
    text = str(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not text or "/" in text or "\\" in text \
            or ".." in text or Path(text).is_absolute():
        raise ValueError(f"{what} {value!r} is not a plain name (no '/', '\\', '..' or absolute path)")


def _read_boxes(path: str | Path) -> dict[str, list]:
    from ..io import require_regular_file
    path = require_regular_file(path, "boxes file")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
            return {str(k): [list(b) for b in v] for k, v in data.items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"bad boxes file {path}: expected {{\"image\": [[x, y, w, h], ...]}} ({exc})") from None
    out: dict[str, list] = {}
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or row[0].startswith("#"):
            continue
        try:
            box = [float(v) for v in row[1:5]]
        except ValueError:
            if n == 1:          # a header line
                continue
            raise ValueError(f"bad boxes file {path} line {n}: expected image,x,y,w,h") from None
        if len(box) != 4:
            raise ValueError(f"bad boxes file {path} line {n}: expected image,x,y,w,h")
        out.setdefault(row[0].strip(), []).append(box)
    return out


def _unique(items: list[Item], skipped: list[Skip] = ()) -> Items:
    # two images with one stem (a.jpg, a.png) would write the same outputs: those keep their suffix
    count: dict[str, int] = {}
    for it in items:
        count[it.key] = count.get(it.key, 0) + 1
    out, seen = [], set()
    for it in items:
        if count[it.key] > 1:
            it = replace(it, name=f"{it.key}_{safe_name(Path(it.image).suffix.lstrip('.'))}")
        if (it.image, it.person) not in seen:
            seen.add((it.image, it.person))
            out.append(it)
    return Items(out, skipped)


def safe_name(text: str) -> str:
    """`text` with every run of characters unsafe in a file name replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "image"
