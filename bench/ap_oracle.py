"""Where a model's COCO AP is lost: its predictions scored again with one kind of error corrected.

    python bench/ap_oracle.py heldout/annotations.json heldout/images [--model default] [--weights FILE]

Predicts every annotated person once (ground-truth boxes, flip test, as `tpexplain eval`), then runs
pycocotools on the predictions as they are and with, in turn, left/right swaps, occluded keypoints,
visible keypoints, and every gross error (farther than PCK@0.1 from its label) replaced by the label.
An AP that stays low with a kind of error removed says that kind alone is not what holds the model back.
"""
from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tpexplain.api import load
from tpexplain.evaluate import PCK_ALPHA
from tpexplain.io import read_image
from tpexplain.keypoints import flip_index


def predict_all(coco: COCO, images: Path, model) -> list[tuple[int, np.ndarray, np.ndarray, float]]:
    rows = []
    for image_id in coco.getImgIds():
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
                if a.get("num_keypoints", 0) > 0]
        if not anns:
            continue
        image = read_image(images / coco.loadImgs(image_id)[0]["file_name"])
        poses = model.predict(image, [a["bbox"] for a in anns], flip=True)
        for a, kp in zip(anns, poses.keypoints):
            gt = np.array(a["keypoints"], np.float32).reshape(-1, 3)
            rows.append((image_id, gt, kp.copy(), float(max(a["bbox"][2:]))))
    return rows


def coco_ap(coco: COCO, rows, fix) -> tuple[float, float, float]:
    results = []
    for image_id, gt, kp, size in rows:
        kp = kp.copy()
        wrong = fix(gt, kp, size)
        kp[wrong, :2] = gt[wrong, :2]
        confident = kp[:, 2][kp[:, 2] > 0.2]   # the person score `tpexplain eval` uses
        results.append({"image_id": image_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                        "score": float(confident.mean()) if len(confident) else 0.0})
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1]), float(ev.stats[2])


def swapped(gt, kp, size):
    mirror = gt[[flip_index(j) for j in range(len(gt))], :2]
    dist = np.linalg.norm(kp[:, :2] - gt[:, :2], axis=1)
    return (np.linalg.norm(kp[:, :2] - mirror, axis=1) < dist) & (dist > PCK_ALPHA * size) & (gt[:, 2] > 0)


def gross(gt, kp, size):
    return (np.linalg.norm(kp[:, :2] - gt[:, :2], axis=1) > PCK_ALPHA * size) & (gt[:, 2] > 0)


CORRECTIONS = {
    "as predicted": lambda gt, kp, size: np.zeros(len(gt), bool),
    "left/right swaps corrected": swapped,
    "occluded keypoints exact": lambda gt, kp, size: gt[:, 2] == 1,
    "visible keypoints exact": lambda gt, kp, size: gt[:, 2] == 2,
    "every gross error (> PCK radius) corrected": gross,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations")
    parser.add_argument("images")
    parser.add_argument("--model", default="default")
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(args.annotations)
    rows = predict_all(coco, Path(args.images), load(args.model, args.weights))
    print(f"{len(rows)} people; {args.model}" + (f" with {args.weights}" if args.weights else ""))
    for name, fix in CORRECTIONS.items():
        ap, ap50, ap75 = coco_ap(coco, rows, fix)
        print(f"{name:44s} AP {ap:.3f}  AP50 {ap50:.3f}  AP75 {ap75:.3f}")


if __name__ == "__main__":
    main()
