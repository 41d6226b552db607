"""Official vs guarded keypoint decoding on a COCO file with its ground-truth boxes (docs/fidelity.md).

Usage: python bench/decode_compare.py ANNOTATIONS IMAGES [MODEL]
Prints, as JSON: keypoints decoded, how many moved (> 0.01 px), the median and largest move, and for the
labelled ones that moved how often each decoding is closer to the ground truth and the mean error of each.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import tpexplain as tpx
from tpexplain.io import read_coco, read_image


def main(annotations: str, images: str, model: str = "default") -> dict:
    pm = tpx.load(model)
    coco = read_coco(annotations)
    total, moved, err_official, err_guarded = 0, [], [], []
    for image_id in coco.getImgIds():
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
                if a.get("num_keypoints", 0) > 0]
        if not anns:
            continue
        image = read_image(Path(images) / coco.loadImgs(image_id)[0]["file_name"])
        boxes = [a["bbox"] for a in anns]
        official = pm.predict(image, boxes, decode="official").keypoints[..., :2]
        guarded = pm.predict(image, boxes, decode="guarded").keypoints[..., :2]
        for i, ann in enumerate(anns):
            gt = np.asarray(ann["keypoints"], float).reshape(-1, 3)
            shift = np.linalg.norm(official[i] - guarded[i], axis=1)
            total += len(shift)
            for k in np.nonzero(shift > 0.01)[0]:
                moved.append(float(shift[k]))
                if gt[k, 2] > 0:
                    err_official.append(float(np.linalg.norm(official[i, k] - gt[k, :2])))
                    err_guarded.append(float(np.linalg.norm(guarded[i, k] - gt[k, :2])))
    eo, eg = np.asarray(err_official), np.asarray(err_guarded)
    return {"model": model, "keypoints": total, "moved": len(moved),
            "median_px": float(np.median(moved)) if moved else 0.0, "max_px": max(moved, default=0.0),
            "labelled_moved": len(eo), "official_closer": int((eo < eg).sum()), "guarded_closer": int((eg < eo).sum()),
            "mean_err_official": float(eo.mean()) if len(eo) else 0.0,
            "mean_err_guarded": float(eg.mean()) if len(eg) else 0.0}


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.splitlines()[2])
    print(json.dumps(main(*sys.argv[1:]), indent=1))
