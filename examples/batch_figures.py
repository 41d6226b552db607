"""Figures for many people from Python: the same machinery as `tpexplain batch`.

    python examples/batch_figures.py                                   # the example images, into ./batch_figures
    python examples/batch_figures.py --folder photos/ --out figs/ --jobs 4
    python examples/batch_figures.py --coco person_keypoints_val2017.json --images val2017/ --out figs/

Re-running skips what is already made; open OUT/index.html for the gallery, OUT/manifest.jsonl for the
numbers (one JSON row per figure: input, person, output, predicted keypoints, timings, results).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tpexplain.batch import FigureOptions, coco_items, folder_items, read_manifest, run_batch

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(HERE), help="folder of images: every person the detector finds in each")
    parser.add_argument("--coco", help="COCO person-keypoints file (with --images): every annotated person")
    parser.add_argument("--images", help="folder of the COCO file's images")
    parser.add_argument("--out", default="batch_figures", help="output folder")
    parser.add_argument("--figures", default="attention,layers", help="attention, layers, occlusion")
    parser.add_argument("--keypoints", default="l_wrist,l_ankle", help="comma list of keypoint names")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: every core)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--weights", default=None)
    args = parser.parse_args(argv)

    items = coco_items(args.coco, args.images) if args.coco else folder_items(args.folder)
    options = FigureOptions(keypoints=tuple(args.keypoints.split(",")), layers="all", dpi=80)
    summary = run_batch(items, args.figures.split(","), args.out, args.model, args.weights, args.jobs, options)
    print(summary, file=sys.stderr)

    # the manifest is the batch's table of contents: e.g. each person's predicted left wrist
    for row in read_manifest(Path(args.out) / "manifest.jsonl"):
        if row["figure"] == "attention" and row["status"] == "ok":
            x, y, score = row["keypoints"]["l_wrist"]
            print(json.dumps({"input": Path(row["input"]).name, "person": row["person"],
                              "l_wrist": [x, y], "score": score, "figure": row["output"]}))
    return 1 if summary.failed else 0


if __name__ == "__main__":   # required: the worker processes are spawned and re-import this file
    sys.exit(main())
