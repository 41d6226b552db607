"""Cost of recording attention, measured side by side in one run (random weights, CPU).

    python bench/bench.py            # full run (a few minutes on 2 cores)
    python bench/bench.py --quick    # fewer repetitions

Prints, for TP-R-A4 and TP-H-A6 at batch 1 and 8, the median forward time with recording (full maps and
the compact q/k mode) as a ratio to a plain forward, repetitions interleaved so load hits all alike; and
for TP-H-A6 at batch 8 the peak memory of each, measured in fresh subprocesses, as a ratio to a plain
forward's peak. Record the load average with the numbers: a busy machine inflates everything.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch


def _forward(model, x, mode):
    from tpexplain.record import record_attention
    with torch.no_grad():
        if mode == "plain":
            return model(x)
        with record_attention(model, mode) as maps:
            out = model(x)
        return out, maps


def time_ratios(name: str, batch: int, reps: int) -> dict:
    from tpexplain import zoo
    torch.manual_seed(0)
    model = zoo.build(name).eval()
    x = torch.randn(batch, 3, 256, 192)
    modes = ("plain", "full", "qk")
    for m in modes:
        _forward(model, x, m)  # warm-up
    times = {m: [] for m in modes}
    for _ in range(reps):
        for m in modes:
            t = time.perf_counter()
            _forward(model, x, m)
            times[m].append(time.perf_counter() - t)
    med = {m: statistics.median(v) for m, v in times.items()}
    return {"model": name, "batch": batch, "plain_s": med["plain"],
            "full_ratio": med["full"] / med["plain"], "qk_ratio": med["qk"] / med["plain"]}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _peak_child(name: str, batch: int, mode: str) -> None:
    from tpexplain import zoo
    torch.manual_seed(0)
    model = zoo.build(name).eval()
    x = torch.randn(batch, 3, 256, 192)
    # reset the kernel's peak-RSS mark, so the peak is the forward's (building the model peaks higher)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    result = _forward(model, x, mode)
    after = _status_kib("VmHWM")
    kept = 0
    if mode != "plain":
        kept = sum(m.nbytes() for m in result[1])
    print(json.dumps({"before_kib": before, "peak_kib": after, "kept_bytes": kept}))


def peak_memory(name: str, batch: int) -> dict:
    out = {}
    for mode in ("plain", "full", "qk"):
        r = subprocess.run([sys.executable, __file__, "--child", name, str(batch), mode], capture_output=True,
                           text=True, check=True)
        out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    plain_peak = out["plain"]["peak_kib"]
    plain_rise = out["plain"]["peak_kib"] - out["plain"]["before_kib"]
    return {"model": name, "batch": batch,
            "plain_peak_mib": plain_peak / 1024,
            **{f"{m}_peak_ratio": out[m]["peak_kib"] / plain_peak for m in ("full", "qk")},
            **{f"{m}_forward_rise_ratio": (out[m]["peak_kib"] - out[m]["before_kib"]) / plain_rise
               for m in ("full", "qk")},
            **{f"{m}_kept_mib": out[m]["kept_bytes"] / 2**20 for m in ("full", "qk")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if args.child:
        _peak_child(args.child[0], int(args.child[1]), args.child[2])
        return
    reps = 3 if args.quick else 7
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    print("\nrecording cost (median forward time, ratio to a plain forward; goal <= 1.05 for the compact mode)")
    print(f"{'model':<9} {'batch':>5} {'plain s':>8} {'full':>6} {'qk':>6}")
    for name in ("tp-r-a4", "tp-h-a6"):
        for batch in (1, 8):
            r = time_ratios(name, batch, reps if batch == 1 else max(2, reps // 2))
            print(f"{name:<9} {batch:>5} {r['plain_s']:>8.3f} {r['full_ratio']:>6.2f} {r['qk_ratio']:>6.2f}",
                  flush=True)
    print("\npeak memory, TP-H-A6 batch 8 (fresh process each; ratio to a plain forward; goal <= 1.5 compact)")
    m = peak_memory("tp-h-a6", 8)
    print(f"plain forward peak RSS {m['plain_peak_mib']:.0f} MiB")
    for mode in ("full", "qk"):
        print(f"{mode:<5} peak RSS ratio {m[f'{mode}_peak_ratio']:.2f}   forward's own rise ratio "
              f"{m[f'{mode}_forward_rise_ratio']:.2f}   attention kept {m[f'{mode}_kept_mib']:.0f} MiB")
    print(f"\nload at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
