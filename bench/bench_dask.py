"""Batch throughput on a Dask cluster of this machine: one worker vs two, and the local process pool.

    .venv/bin/python bench/bench_dask.py [--people 24] [--dpi 120]

Starts a real `dask scheduler` and `dask worker` processes (one torch thread each, as the local pool's workers)
on 127.0.0.1, warms each cluster up (every worker loads the model once), then times `run_batch` on coco_mini's
people (repeated to --people) with --scheduler, and the same run on the local process pool (--jobs 2, its
worker start and model loads included, as a user sees it). Prints a Markdown table for docs/performance.md.
Not a test: the numbers depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COCO = ROOT / "tests" / "data" / "coco_mini"
DASK = [sys.executable, "-m", "dask"]


def start_cluster(folder: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "scheduler.json"
    procs = [subprocess.Popen(DASK + ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                      "--scheduler-file", str(file)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    while not file.exists() or not file.read_text().strip():
        if procs[0].poll() is not None:
            raise RuntimeError(f"dask scheduler exited with status {procs[0].returncode}")
        time.sleep(0.2)
    time.sleep(0.2)
    address = json.loads(file.read_text())["address"]
    for n in range(workers):
        procs.append(subprocess.Popen(DASK + ["worker", address, "--nthreads", "1", "--no-dashboard",
                                              "--host", "127.0.0.1", "--local-directory", str(folder / f"w{n}")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    from distributed import Client
    with Client(address, set_as_default=False) as client:
        client.wait_for_workers(workers, timeout=300)
    return address, procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in reversed(procs):
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def timed(items, out: Path, **kwargs) -> float:
    from tpexplain.batch import run_batch
    t = time.perf_counter()
    summary = run_batch(items, ["attention"], out, force=True, progress=True, **kwargs)
    seconds = time.perf_counter() - t
    assert summary.made == len(items) and not summary.failed, summary.failures
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=24, help="people per run (coco_mini's 12, repeated)")
    parser.add_argument("--dpi", type=int, default=120)
    args = parser.parse_args()
    from tpexplain.batch import FigureOptions, coco_items
    base = list(coco_items(COCO / "test_coco.json", COCO))
    items = [replace(base[i % len(base)], name=f"{base[i % len(base)].key}_{i}") for i in range(args.people)]
    options = FigureOptions(keypoints=("l_ankle",), dpi=args.dpi)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        tmp = Path(tmp)
        for workers in (1, 2):
            address, procs = start_cluster(tmp / f"cluster{workers}", workers)
            try:
                # warm-up: every worker loads the model (one task each, at least)
                timed(items[:2 * workers], tmp / "warm", options=options, scheduler=address)
                seconds = timed(items, tmp / f"dask{workers}", options=options, scheduler=address)
            finally:
                stop(procs)
            rows.append((f"Dask, {workers} worker{'s' if workers > 1 else ''} (warm)", seconds))
        seconds = timed(items, tmp / "local", options=options, jobs=2)
        rows.append(("local process pool, --jobs 2 (worker start included)", seconds))
    one = rows[0][1]
    print(f"{args.people} people, attention figure of one keypoint, dpi {args.dpi}, default model; "
          f"{os.cpu_count()} cores; load average before: {load:.1f}\n")
    print("| run | seconds | people/s | vs 1 Dask worker |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {args.people / seconds:.2f} | {one / seconds:.2f}x |")


if __name__ == "__main__":
    main()
