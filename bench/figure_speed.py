"""Figure drawing against the model: how long each figure kind takes to draw and save, beside the forward
pass (`PoseModel.explain`) that produced its numbers, on one photo and person.

    python bench/figure_speed.py                     # default model, the skier of coco_mini, all 17 keypoints
    python bench/figure_speed.py --repeat 5 --image tests/data/coco_mini/000000197388.jpg --bbox 139,102,222,242

To compare with another revision, run this file from a copy of that revision's tree (it imports the
tpexplain beside it), e.g. `git archive REV | tar -x -C /tmp/old && cp bench/figure_speed.py /tmp/old/bench/`.

Prints, per figure kind, the median wall time to build the figure and write it as PNG (150 dpi), the
median time of `explain`, their ratio, and the PNG's size in pixels and bytes. Model and figure runs
alternate, so other jobs on the machine slow both alike; the ratio is the number to read (record the
load average with it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--image", default=str(ROOT / "tests/data/coco_mini/000000000785.jpg"))
    ap.add_argument("--bbox", default="280.79,44.73,218.7,346.68")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import torch
    from PIL import Image

    from tpexplain.analysis.depth import layer_study
    from tpexplain.api import load
    from tpexplain.figures import save_figure
    from tpexplain.io import read_image

    torch.set_num_threads(1)
    pm = load(args.model)
    img = read_image(args.image)
    box = tuple(float(v) for v in args.bbox.split(","))
    ex = pm.explain(img, bbox=box)            # warm-up
    if hasattr(ex, "meta"):                   # (absent before the figures of issue 14: the bench runs there too)
        ex.meta.update(image=Path(args.image).name, person="--bbox", model=args.model)
    kinds = {
        "layers -k all": lambda: layer_study(ex, "all").figure(),
        "layers -k l_wrist": lambda: layer_study(ex, "l_wrist").figure(),
        "attention -k all --layer all": lambda: ex.grid(None, None),
        "attention -k all --layer all --on image": lambda: ex.grid(None, None, where="image"),
        "attention -k l_wrist": lambda: ex.dependency("l_wrist").figure(),
    }
    out = Path(tempfile.mkdtemp()) / "figure.png"
    print(f"load average {os.getloadavg()[0]:.2f}; {args.model}, {Path(args.image).name}, box {args.bbox}")
    print(f"{'figure':<42} {'model s':>8} {'figure s':>9} {'ratio':>6} {'pixels':>11} {'bytes':>10}")
    for name, make in kinds.items():
        model_t, fig_t = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            pm.explain(img, bbox=box)
            model_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            save_figure(make(), out, force=True)
            fig_t.append(time.perf_counter() - t)
        m, f = statistics.median(model_t), statistics.median(fig_t)
        w, h = Image.open(out).size
        print(f"{name:<42} {m:>8.2f} {f:>9.2f} {f / m:>6.1f} {f'{w}x{h}':>11} {out.stat().st_size:>10,}")


if __name__ == "__main__":
    main()
