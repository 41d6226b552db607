"""Where a model's COCO AP is lost: its predictions scored again with one kind of error corrected.

    python bench/ap_oracle.py heldout/annotations.json heldout/images [--model default] [--weights FILE]

Predicts every annotated person once (ground-truth boxes, flip test, as `tpexplain eval`), then runs
pycocotools on the predictions as they are and with, in turn, left/right swaps, occluded keypoints,
visible keypoints, and every gross error (farther than PCK@0.1 from its label) replaced by the label.
An AP that stays low with a kind of error removed says that kind alone is not what holds the model back.
On synthetic sets (annotations with a "view") it also scores against COCO's habit of leaving the unseen
nose and eyes of back views unlabelled.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tpexplain.api import load
from tpexplain.keypoints import PCK_ALPHA
from tpexplain.training.evaluate import score_keypoints
from tpexplain.io import read_image


def predict_all(coco: COCO, images: Path, model) -> list[tuple[int, np.ndarray, np.ndarray, float, float]]:
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
            rows.append((image_id, gt, kp.copy(), float(max(a["bbox"][2:])), float(a["area"])))
    return rows


def coco_ap(coco: COCO, rows, fix) -> tuple[float, float, float]:
    results = []
    for image_id, gt, kp, size, area in rows:
        kp = kp.copy()
        wrong = fix(gt, kp, size, area)
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


def swapped(gt, kp, size, area):
    return score_keypoints(kp, gt, area, size)[1] & (gt[:, 2] > 0)   # the swaps `eval --per-keypoint` counts


def gross(gt, kp, size, area):
    return (np.linalg.norm(kp[:, :2] - gt[:, :2], axis=1) > PCK_ALPHA * size) & (gt[:, 2] > 0)


def back_face_unlabelled(coco: COCO) -> COCO:
    """The same labels with the occluded nose and eyes of back views unlabelled (v=0), as COCO's annotators
    often leave a face they cannot see."""
    data = copy.deepcopy(coco.dataset)
    for a in data["annotations"]:
        if a["view"] == "back":
            for j in (0, 1, 2):
                if a["keypoints"][3 * j + 2] == 1:
                    a["keypoints"][3 * j:3 * j + 3] = [0, 0, 0]
            a["num_keypoints"] = sum(v > 0 for v in a["keypoints"][2::3])
    out = COCO()
    out.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        out.createIndex()
    return out


CORRECTIONS = {
    "as predicted": lambda gt, kp, size, area: np.zeros(len(gt), bool),
    "left/right swaps corrected": swapped,
    "occluded keypoints exact": lambda gt, kp, size, area: gt[:, 2] == 1,
    "visible keypoints exact": lambda gt, kp, size, area: gt[:, 2] == 2,
    "every gross error (> PCK radius) corrected": gross,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations")
    parser.add_argument("images")
    parser.add_argument("--model", default="default")
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(args.annotations)
        rows = predict_all(coco, Path(args.images), load(args.model, args.weights))
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"error: {e}")
    print(f"{len(rows)} people; {args.model}" + (f" with {args.weights}" if args.weights else ""))
    for name, fix in CORRECTIONS.items():
        ap, ap50, ap75 = coco_ap(coco, rows, fix)
        print(f"{name:48s} AP {ap:.3f}  AP50 {ap50:.3f}  AP75 {ap75:.3f}")
    if all("view" in a for a in coco.dataset["annotations"]):   # synthetic sets say which way people face
        ap, ap50, ap75 = coco_ap(back_face_unlabelled(coco), rows, CORRECTIONS["as predicted"])
        print(f"{'back-view nose and eyes unlabelled (COCO-like)':48s} AP {ap:.3f}  AP50 {ap50:.3f}  AP75 {ap75:.3f}")


if __name__ == "__main__":
    main()
