"""Recall, precision and time per image of the person detector (tpexplain.detect) against COCO boxes.

    python bench/detect_recall.py                          # tests/data/coco_mini and 30 synthetic images
    python bench/detect_recall.py --coco ANN --images DIR  # any COCO person-keypoints set
    python bench/detect_recall.py --rescore default        # also with the pose model's re-scoring

Matching as COCO's detection evaluation does at one threshold: detections best first, each matched to the
unmatched ground-truth box it overlaps most, if IoU >= 0.5. The people counted are the annotations with
keypoints (num_keypoints > 0) that are not crowds. Crowd regions and annotations without keypoints (mostly
tiny or hidden people) are "ignored": a detection on one is neither a hit nor a false alarm, and they are
not counted as missed. Recall is also given by size (COCO's small < 32², medium < 96², large). Time per
image: wall-clock seconds and this process's CPU seconds (all threads), with the machine's load printed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tpexplain.detect.people import find_people, iou  # noqa: E402
from tpexplain.io import read_coco, read_image  # noqa: E402


def size_class(area: float) -> str:
    return "small" if area < 32 ** 2 else "medium" if area < 96 ** 2 else "large"


def evaluate(ann: str | Path, images: str | Path, detect, threshold: float = 0.5) -> dict:
    """Counts over one COCO set: people, hits (overall and by size), detections, false alarms, seconds."""
    coco = read_coco(ann)
    out = {"images": 0, "people": 0, "hits": 0, "detections": 0, "false": 0, "ignored": 0, "seconds": [], "cpu": [],
           "by_size": {k: [0, 0] for k in ("small", "medium", "large")}}
    for img_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(img_id)[0]
        image = read_image(Path(images) / info["file_name"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        counted = [a for a in anns if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)]
        ignored = [a for a in anns if a not in counted]
        t0, c0 = time.perf_counter(), time.process_time()
        dets = detect(image)
        out["seconds"].append(time.perf_counter() - t0)
        out["cpu"].append(time.process_time() - c0)          # all of this process's threads
        matched = set()
        for d in dets:                    # best first
            best, which = threshold, None
            for i, a in enumerate(counted):
                if i not in matched and iou(d.box, a["bbox"]) >= best:
                    best, which = iou(d.box, a["bbox"]), i
            if which is not None:
                matched.add(which)
            elif any(iou(d.box, a["bbox"]) >= threshold for a in ignored):
                out["ignored"] += 1
            else:
                out["false"] += 1
        out["images"] += 1
        out["people"] += len(counted)
        out["hits"] += len(matched)
        out["detections"] += len(dets)
        for i, a in enumerate(counted):
            cls = out["by_size"][size_class(a["area"])]
            cls[0] += 1
            cls[1] += i in matched
    return out


def report(name: str, detector: str, r: dict) -> str:
    recall = r["hits"] / max(r["people"], 1)
    precision = (r["detections"] - r["false"] - r["ignored"]) / max(r["detections"] - r["ignored"], 1)
    sizes = ", ".join(f"{k} {h}/{n}" for k, (n, h) in r["by_size"].items() if n)
    sec, cpu = np.array(r["seconds"]), np.array(r["cpu"])
    return (f"{name:<10} {detector:<20} {r['images']:>6} {r['people']:>6} {r['hits']:>5} {recall:>6.2f} "
            f"{r['detections']:>5} {r['false']:>5} {precision:>9.2f} {sec.mean():>7.2f} {cpu.mean():>7.2f}   ({sizes})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coco", help="COCO person-keypoints file (default: tests/data/coco_mini and synthetic)")
    ap.add_argument("--images", help="folder of its images")
    ap.add_argument("--synthetic", type=int, default=30, help="synthetic images (0: none)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--rescore", metavar="MODEL", help="also measure detect_people re-scored by this zoo model")
    args = ap.parse_args()
    sets = []
    if args.coco:
        sets.append((Path(args.coco).stem[:10], args.coco, args.images or Path(args.coco).parent))
    else:
        mini = ROOT / "tests" / "data" / "coco_mini"
        sets.append(("coco_mini", mini / "test_coco.json", mini))
        if args.synthetic:
            tmp = Path(tempfile.mkdtemp()) / "synth"
            subprocess.run([sys.executable, "-m", "tpexplain", "synth", "--n", str(args.synthetic), "--seed",
                            str(args.seed), "--out", str(tmp)], check=True, capture_output=True)
            sets.append(("synthetic", tmp / "annotations.json", tmp / "images"))
    detectors = [("opencv (the CLI's)", find_people)]
    if args.rescore:
        import tpexplain
        pm = tpexplain.load(args.rescore)
        detectors.append((f"+ rescored: {args.rescore}"[:20], lambda img: tpexplain.detect_people(img, pm)))
    if args.synthetic and not args.coco:
        print(f"synthetic: tpexplain synth --n {args.synthetic} --seed {args.seed}")
    print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall time grows with it)")
    print(f"{'set':<10} {'detector':<20} {'images':>6} {'people':>6} {'hits':>5} {'recall':>6} {'dets':>5} "
          f"{'false':>5} {'precision':>9} {'s/image':>7} {'cpu s':>7}")
    for name, ann, images in sets:
        for dname, detect in detectors:
            print(report(name, dname, evaluate(ann, images, detect)))


if __name__ == "__main__":
    main()
