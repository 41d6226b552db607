"""The people a batch explains: every image of a folder (whole, or per a boxes file) or every person of a COCO file."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm")


@dataclass(frozen=True)
class Item:
    """One person to explain: an image file and a box (x, y, w, h); no box means the whole image."""

    image: str
    person: str                                   # "image", "box3", "ann442619", ...
    bbox: tuple[float, float, float, float] | None = None
    name: str | None = None                       # output stem, when the derived one would collide

    @property
    def key(self) -> str:
        """The stem of this person's output files."""
        if self.name:
            return self.name
        stem = safe_name(Path(self.image).stem)
        return stem if self.person == "image" else f"{stem}_{self.person}"


def folder_items(folder: str | Path, boxes: str | Path | None = None) -> list[Item]:
    """Every image in `folder` taken whole, or the people that a boxes file lists.

    A boxes file is JSON ({"img.jpg": [[x, y, w, h], ...], ...}) or CSV (image,x,y,w,h per line, with or
    without a header); image names are relative to `folder`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder not found: {folder}")
    if boxes is None:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
        return _unique([Item(str(p), "image") for p in files])
    from ..io import finite_box
    items = []
    for name, bxs in _read_boxes(boxes).items():
        for i, b in enumerate(bxs):
            items.append(Item(str(folder / name), f"box{i}", finite_box(b, f"{boxes}: {name} box {i + 1}")))
    if not items:
        raise ValueError(f"no boxes in {boxes}")
    return _unique(items)


def coco_items(annotations: str | Path, images: str | Path) -> list[Item]:
    """Every person instance with at least one labelled keypoint (not crowds), its bbox as the box."""
    from ..io import check_annotation, read_coco
    annotations, images = Path(annotations), Path(images)
    if not images.is_dir():
        raise ValueError(f"image folder not found: {images}")
    coco = read_coco(annotations)
    try:
        files = {image_id: im["file_name"] for image_id, im in coco.imgs.items()}
        anns = coco.loadAnns(coco.getAnnIds())            # every annotation, in the file's order
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ValueError(f"not a COCO annotation file: {annotations} ({exc})") from None
    items = []
    for a in anns:
        check_annotation(a, str(annotations))      # finite numbers in range, before any geometry
        if a.get("iscrowd", 0) or a.get("num_keypoints", 0) <= 0 or a.get("image_id") not in files:
            continue
        # output names are built from these: refuse a path where a name is expected
        _check_name(a.get("id"), f"{annotations}: annotation {a.get('id')!r}: id")
        _check_name(files[a["image_id"]], f"{annotations}: annotation {a.get('id')!r}: its image's file_name")
        x, y, w, h = (float(v) for v in a["bbox"])
        if w <= 0 or h <= 0:
            continue
        items.append(Item(str(images / files[a["image_id"]]), f"ann{a['id']}", (x, y, w, h)))
    if not items:
        raise ValueError(f"no person annotations with keypoints in {annotations}")
    return _unique(items)


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


def _unique(items: list[Item]) -> list[Item]:
    # two images with one stem (a.jpg, a.png) would write the same outputs: those keep their suffix
    count: dict[str, int] = {}
    for it in items:
        count[it.key] = count.get(it.key, 0) + 1
    out, seen = [], set()
    for it in items:
        if count[it.key] > 1:
            it = Item(it.image, it.person, it.bbox, name=f"{it.key}_{safe_name(Path(it.image).suffix.lstrip('.'))}")
        if (it.image, it.person) not in seen:
            seen.add((it.image, it.person))
            out.append(it)
    return out


def safe_name(text: str) -> str:
    """`text` with every run of characters unsafe in a file name replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "image"
