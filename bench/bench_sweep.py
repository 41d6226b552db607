"""Occlusion sweep: ours against Captum's `Occlusion`, same windows, same model, same input, all 17 keypoints.

    python bench/bench_sweep.py                  # TP-R-A4 (random weights), window 32 / stride 16: 165 windows
    python bench/bench_sweep.py --window 48 --stride 24 --threads 2
    python bench/bench_sweep.py --quick          # window 64 / stride 32 (35 windows)

Captum is a benchmark-only dependency (`pip install captum`). Its forward function returns the 17 heatmap
values at the clean peaks (multi-output occlusion, one pass per window for every keypoint) and its baseline
is the very fill image our sweep pastes, so the two must give the same per-pixel map (Captum's convention:
each pixel gets the mean drop of the windows covering it).

Prints the agreement (max |difference| relative to the largest drop), and three times: ours, Captum's
(the faster of perturbations_per_eval 1 and --batch-size), and the plain forward passes the sweep needs
(N occluded inputs, batched like ours), with the ratios Captum/ours and ours/forwards. Record the load
average with the numbers: other jobs on the machine inflate everything.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch


def _timed(f):
    t, c = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tp-r-a4")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--stride", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="window 64, stride 32")
    args = ap.parse_args()
    if args.quick:
        args.window, args.stride = 64, 32
    torch.set_num_threads(args.threads)

    from captum.attr import Occlusion

    import tpexplain as tpx
    from tpexplain.analysis.sensitivity import SensitivityMap, crop_fill, occlude, sweep, window_starts

    pm = tpx.load(args.model, weights="random")
    model = pm.model
    image = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "coco_mini", "000000000785.jpg")
    if os.path.exists(image):
        ex = pm.explain(image, bbox=(280.79, 44.73, 218.7, 346.68), flip=False)
    else:   # any input will do for timing and agreement
        rng = np.random.default_rng(0)
        ex = pm.explain(rng.integers(0, 255, (256, 192, 3), dtype=np.uint8), flip=False)
    x = ex.input.float()
    h, w = x.shape[-2:]
    win, stride = args.window, args.stride
    starts_y, starts_x = window_starts(h, win, stride), window_starts(w, win, stride)
    boxes = [(y, xx) for y in starts_y for xx in starts_x]
    fill = crop_fill(x, "mean", win)
    keypoints = list(range(len(pm.keypoint_names)))
    n = len(boxes)
    load_before = os.getloadavg()[0]
    print(f"{args.model}, window {win}/{stride}: {n} windows, {len(keypoints)} keypoints, "
          f"{args.threads} thread(s), torch {torch.__version__}, load {load_before:.2f}", flush=True)

    with torch.no_grad():
        clean_maps = model(x[None])[0]
    flat = clean_maps.flatten(1).argmax(1)
    k = torch.as_tensor(keypoints)

    def forwards():
        with torch.no_grad():
            for i in range(0, n, args.batch_size):
                model(occlude(x, fill, boxes[i:i + args.batch_size], win))

    def ours():
        return sweep(model, x, fill, boxes, win, keypoints, args.batch_size, fast=True)

    def peaks_of(inp):
        return model(inp).flatten(2)[:, k, flat]          # (B, 17): every keypoint from one pass

    def captum(ppe):
        with torch.no_grad():
            return Occlusion(peaks_of).attribute(x[None], sliding_window_shapes=(3, win, win),
                                                 strides=(3, stride, stride), baselines=fill[None],
                                                 perturbations_per_eval=ppe)

    ours()                                                 # warm-up (allocator, kernels)
    _, t_fwd, c_fwd = _timed(forwards)
    (clean, peaks, drops), t_ours, c_ours = _timed(ours)
    cap = {}
    for ppe in sorted({1, args.batch_size}):
        attr, t, c = _timed(lambda: captum(ppe))
        cap[ppe] = (attr, t, c)
        print(f"  captum ppe={ppe}: {t:.2f} s", flush=True)
    _, t_ours2, c_ours2 = _timed(ours)                     # again, after Captum: load drifts
    t_ours, c_ours = min(t_ours, t_ours2), min(c_ours, c_ours2)
    best = min(cap, key=lambda p: cap[p][1])
    attr, t_cap, c_cap = cap[best]

    names = [pm.keypoint_names[i] for i in keypoints]
    sm = SensitivityMap(drops.reshape(len(keypoints), len(starts_y), len(starts_x)), names, win, stride,
                        starts_y, starts_x, clean, peaks, (h, w), "mean")
    ours_px = np.stack([sm.on_crop(nm) for nm in names])                 # (17, H, W)
    cap_px = attr.reshape(len(keypoints), 3, h, w).numpy()               # Captum: a map per output and channel
    diff = float(np.abs(cap_px - ours_px[:, None]).max())
    scale = float(np.abs(ours_px).max())
    agree = diff <= 1e-4 * max(scale, 1e-12) + 1e-7

    result = {"model": args.model, "window": win, "stride": stride, "windows": n, "keypoints": len(keypoints),
              "threads": args.threads, "batch_size": args.batch_size, "load_before": load_before,
              "load_after": os.getloadavg()[0], "ours_s": t_ours, "ours_cpu_s": c_ours,
              "captum_s": t_cap, "captum_cpu_s": c_cap, "captum_ppe": best,
              "captum_s_by_ppe": {p: v[1] for p, v in cap.items()},
              "forwards_s": t_fwd, "forwards_cpu_s": c_fwd,
              "captum_over_ours": t_cap / t_ours, "ours_over_forwards": t_ours / t_fwd,
              "max_abs_diff": diff, "max_abs_drop": scale, "agree": agree}
    print(f"agreement: max |captum - ours| = {diff:.3g} (largest drop {scale:.3g}) -> {'OK' if agree else 'MISMATCH'}")
    print(f"ours      {t_ours:7.2f} s  ({t_ours / n * 1000:.1f} ms/window)")
    print(f"captum    {t_cap:7.2f} s  (perturbations_per_eval={best})")
    print(f"forwards  {t_fwd:7.2f} s  ({n} plain forward passes, batch {args.batch_size})")
    print(f"captum/ours = {t_cap / t_ours:.2f}x    ours/forwards = {t_ours / t_fwd:.2f}")
    print(json.dumps(result))
    sys.exit(0 if agree else 1)


if __name__ == "__main__":
    main()
