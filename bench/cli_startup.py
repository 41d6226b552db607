"""How long the command line takes to answer --help and --version, beside a bare Python start.

    .venv/bin/python bench/cli_startup.py [-n 15]

Runs `python -c pass`, `python -m tpexplain --help` and `tpexplain --version` interleaved (one of each per
round, so a busy machine slows all three alike), N rounds, and prints each one's median wall time and its
ratio to the bare interpreter. The goal: --help and --version under 0.5 s, because they import neither
torch nor matplotlib.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def commands() -> dict[str, list[str]]:
    """The three commands, run with this interpreter and its environment's `tpexplain` script."""
    script = Path(sys.executable).with_name("tpexplain")
    if not script.exists():
        found = shutil.which("tpexplain")
        if found is None:
            sys.exit("error: no `tpexplain` script beside this Python or on PATH; run `pip install -e .`")
        script = Path(found)
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -m tpexplain --help": [sys.executable, "-m", "tpexplain", "--help"],
        "tpexplain --version": [str(script), "--version"],
    }


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="rounds (each runs every command once)")
    args = parser.parse_args()
    cmds = commands()
    for argv in cmds.values():          # warm the file cache; not timed
        time_once(argv)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(args.n):
        for name, argv in cmds.items():
            times[name].append(time_once(argv))
    base = statistics.median(times["python -c pass"])
    width = max(map(len, cmds))
    print(f"{'command':<{width}}  {'median':>8}  {'min':>8}  {'x python':>8}   ({args.n} interleaved runs each)")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<{width}}  {med:>7.3f}s  {min(ts):>7.3f}s  {med / base:>8.2f}")


if __name__ == "__main__":
    main()
