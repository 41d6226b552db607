"""`tpexplain eval`: COCO keypoint AP (OKS, ground-truth boxes) with pycocotools, plus PCK for visible
and for occluded keypoints separately."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from .api import PoseModel
from .io import read_image

PCK_ALPHA = 0.1  # a keypoint is correct within 0.1 x the longer side of its person's box


def evaluate(pose_model: PoseModel, annotations: str | Path, images: str | Path, flip: bool = True,
             progress=None, log=print) -> dict:
    """AP and PCK of `pose_model` on a COCO person-keypoints file, using its ground-truth boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
    results, hits = [], {1: [], 2: []}
    image_ids = [i for i in coco.getImgIds() if any(
        a.get("num_keypoints", 0) > 0 for a in coco.loadAnns(coco.getAnnIds(imgIds=i, iscrowd=False)))]
    for n, image_id in enumerate(image_ids):
        info = coco.loadImgs(image_id)[0]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
                if a.get("num_keypoints", 0) > 0]
        image = read_image(Path(images) / info["file_name"])
        poses = pose_model.predict(image, [a["bbox"] for a in anns], flip=flip)
        for ann, kp in zip(anns, poses.keypoints):
            scores = kp[:, 2]
            confident = scores[scores > 0.2]
            results.append({"image_id": image_id, "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                            "score": float(confident.mean()) if len(confident) else 0.0})
            gt = np.array(ann["keypoints"], np.float32).reshape(-1, 3)
            size = max(ann["bbox"][2], ann["bbox"][3])
            dist = np.linalg.norm(kp[:, :2] - gt[:, :2], axis=1)
            for v in (1, 2):
                hits[v] += (dist[gt[:, 2] == v] <= PCK_ALPHA * size).tolist()
        if progress:
            progress(n + 1, len(image_ids))
    if not results:
        raise ValueError(f"no person with keypoints in {annotations}")
    chatter, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(chatter):   # pycocotools narrates every step; keep only the summary
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        ev.params.useSegm = None
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(out):
        ev.summarize()
    log(out.getvalue().rstrip())
    names = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    metrics = {k: float(v) for k, v in zip(names, ev.stats)}
    metrics["PCK_visible"] = float(np.mean(hits[2])) if hits[2] else float("nan")
    metrics["PCK_occluded"] = float(np.mean(hits[1])) if hits[1] else float("nan")
    metrics["num_visible"], metrics["num_occluded"] = len(hits[2]), len(hits[1])
    metrics["num_people"] = len(results)
    return metrics
