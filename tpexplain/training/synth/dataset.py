"""A folder of synthetic people in COCO person-keypoints format: images/ and annotations.json, written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import cv2

from tpexplain.io import GENERATOR, atomic_path, check_output_dir, made_by_tpexplain, write_text_atomic
from tpexplain.keypoints import COCO_LONG_NAMES, SKELETON
from tpexplain.progress import track

from .scene import render_image


def make_dataset(out_dir: str | Path, n: int, seed: int = 0, *, max_people: int = 3, force: bool = False,
                 progress: bool = True) -> Path:
    """Writes out_dir/images/{id:012d}.jpg (quality 95) and out_dir/annotations.json in COCO
    person-keypoints format; returns the annotation path. Image i (id i + 1) uses
    render_image(seed * 1_000_003 + i) so two seeds never share images (for n < 1_000_003). Writes
    atomically (temp file + os.replace) so an interrupted run leaves no half-written annotation file.
    `file_name` in the JSON is relative to out_dir/images. An existing dataset (annotations.json) is
    replaced only with `force`, and an existing image file only if tpexplain wrote it (or with `force`).
    Progress is shown per image unless `progress` is False."""
    if seed < 0 or n < 0:
        raise ValueError("seed and n must be >= 0")
    out = Path(out_dir)
    check_output_dir(out, parents=True)
    if not force:
        _refuse_to_overwrite(out, n)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in track(range(n), "synth", "images", enabled=progress):
        img, people = render_image(seed * 1_000_003 + i, max_people=max_people)
        iid = i + 1
        name = f"{iid:012d}.jpg"
        ok, enc = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise RuntimeError(f"could not encode image {iid}")
        with atomic_path(out / "images" / name) as tmp:
            tmp.write_bytes(_marked(enc.tobytes()))
        images.append(dict(id=iid, file_name=name, width=int(img.shape[1]), height=int(img.shape[0])))
        for p in people:
            kp = p["keypoints"]
            anns.append(dict(
                id=len(anns) + 1, image_id=iid, category_id=1, iscrowd=0,
                keypoints=[round(float(v), 2) for v in kp.reshape(-1)],
                num_keypoints=int((kp[:, 2] > 0).sum()),
                bbox=[round(float(v), 2) for v in p["bbox"]], area=round(float(p["area"]), 2),
                view=p["view"], pose=p["pose"]))
    coco = dict(
        info=dict(description="tpexplain synthetic people", generator="tpexplain.synth", seed=seed, n=n,
                  max_people=max_people, image_dir="images"),
        images=images, annotations=anns,
        categories=[dict(id=1, name="person", supercategory="person", keypoints=list(COCO_LONG_NAMES),
                         skeleton=[[a + 1, b + 1] for a, b in SKELETON])])
    return write_text_atomic(out / "annotations.json", json.dumps(coco, separators=(",", ":")))


def _refuse_to_overwrite(out: Path, n: int) -> None:
    """A one-line ValueError if writing n images into `out` would replace a dataset or a file we did not write."""
    if (out / "annotations.json").exists():
        raise ValueError(f"{out} already holds a dataset (annotations.json): use --force to replace it")
    for i in range(n):
        image = out / "images" / f"{i + 1:012d}.jpg"
        if (image.exists() or image.is_symlink()) and not (image.is_file() and made_by_tpexplain(image)):
            raise ValueError(f"{image} exists and was not written by tpexplain: use --force to replace it")


def _marked(jpeg: bytes) -> bytes:
    """The JPEG with a comment segment naming tpexplain after its JFIF header (how our files are recognised)."""
    comment = GENERATOR.encode()
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    at = 2 + 2 + int.from_bytes(jpeg[4:6], "big") if jpeg[2:4] == b"\xff\xe0" else 2
    return jpeg[:at] + segment + jpeg[at:]
