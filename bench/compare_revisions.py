"""Before/after check: run the same `tpexplain` commands with two revisions and compare every output file.

Usage:
    python bench/compare_revisions.py --base bd7682c [--head WORKTREE_OR_REV] [--out DIR] [--rtol 0]
                                      [--only NAME,NAME] [--reuse] [--head-like-base] [--list]

--base is a git revision; it is checked out with `git worktree add` in a temporary folder (removed at the
end). --head is a folder holding a checkout (default: this repository's working tree, as it is now) or a
revision (checked out like the base). Both sides run with the same Python (this repository's .venv, else the
one running the script), each with its own checkout first on sys.path: every command goes through a small
runner, `python -c "...; from tpexplain.cli import main; main()" ARGS`, which works for the old single
`cli.py` and for the `cli/` package, and which fails if any `tpexplain` module was imported from outside
that side's checkout (the venv's editable install must not win). Inputs are this repository's
tests/data/coco_mini files, read by both sides; each command runs in its own folder,
OUT/{base,head}/NAME/, with its stdout in stdout.txt (stderr.txt and rc.txt are kept, not compared). The table
is also written to OUT/report.txt, and every difference in full to OUT/report.json.

Comparison (bench/compare_outputs.py), one row per output file: images (png/jpg) decoded with OpenCV, pixel
by pixel (differing pixels, max difference, where); JSON, JSONL and CSV number by number (max absolute and
relative difference, where the largest is; "last printed digit only" says every difference is one unit of the
last digit of a rounded printed value); HTML pages with their embedded images decoded and compared by pixel,
and the explorer page's data decoded (quantised attention bytes, float32 scales); text line by line (aligned)
with paths and timings masked, numbers in it compared as numbers. Timings (JSON keys such as "timings",
"seconds") and path strings are not compared. "same" means exactly equal. The last line is `N same, M differ`;
the exit status is 1 when a difference exceeds --rtol (relative, default 0: exact) or a command failed on
one side only.

--head-like-base adds to head's commands the switches (BASE_DEFAULTS) that restore defaults other issues changed
on purpose after the base (issue 12: --decode guarded, --query geometric), to isolate the restructuring.

Re-run some commands into an earlier --out folder with `--only NAME --reuse` (--reuse keeps a side's run
that succeeded before). The full list takes about 5 minutes per side on 2 cores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_outputs import compare_trees  # noqa: E402  (bench/ is not a package)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "coco_mini"
IMG = str(DATA / "000000000785.jpg")
ANN = str(DATA / "test_coco.json")
BBOX = "280.79,44.73,218.7,346.68"
ONE = [IMG, "--bbox", BBOX]

COMMANDS: list[tuple[str, list[str]]] = [
    ("attention", ["attention", *ONE, "-k", "l_ankle"]),
    ("attention_all", ["attention", *ONE, "-k", "all", "--layer", "all"]),
    ("attention_affected", ["attention", *ONE, "-k", "r_wrist", "--mode", "affected", "--on", "image"]),
    ("layers", ["layers", *ONE, "-k", "l_wrist"]),
    ("occlusion", ["occlusion", *ONE, "-k", "l_ankle"]),
    ("occlusion_part", ["occlusion", *ONE, "-k", "l_ankle", "--part", "left_arm"]),
    ("occlusion_symmetric", ["occlusion", *ONE, "-k", "l_ankle", "--symmetric"]),
    ("occlusion_sweep", ["occlusion", *ONE, "-k", "l_ankle,r_wrist", "--sweep"]),
    ("explore", ["explore", *ONE]),
    # TokenPose keypoint tokens; both revisions accept --weights random (seeded)
    ("kp_attention", ["kp-attention", *ONE, "--model", "tokenpose-t", "--weights", "random"]),
    # two keypoints, not all 17: a 17-panel figure per person takes several seconds to draw
    ("batch", ["batch", "--coco", ANN, "--images", str(DATA), "--figures", "attention,layers", "-k", "l_ankle,r_wrist",
               "--out", "out", "--no-progress"]),
    ("findings_synthetic", ["findings", "--synthetic", "4", "--seed", "1", "--occlusion-people", "1", "--out", "out"]),
    ("findings_coco", ["findings", "--coco", ANN, "--images", str(DATA), "--occlusion-people", "1", "--out", "out"]),
    ("synth", ["synth", "--n", "3", "--seed", "5", "--out", "out"]),
    ("eval", ["eval", "--coco", ANN, "--images", str(DATA)]),
]

# --head-like-base: the switches that give back the base's defaults changed on purpose by issue 12
# (docs/fidelity.md: official keypoint decoding and query token), so that what remains is the restructuring
_GUARDED, _GEOMETRIC = ["--decode", "guarded"], ["--query", "geometric"]
BASE_DEFAULTS = {"attention": _GUARDED + _GEOMETRIC, "layers": _GUARDED + _GEOMETRIC, "batch": _GUARDED + _GEOMETRIC,
                 "occlusion": _GUARDED, "explore": _GUARDED, "kp-attention": _GUARDED, "findings": _GUARDED,
                 "eval": _GUARDED}

# Runs the CLI of the checkout in $TPEXPLAIN_COMPARE_ROOT, and refuses a tpexplain module from anywhere else.
RUNNER = """\
import os, sys
root = os.path.realpath(os.environ["TPEXPLAIN_COMPARE_ROOT"])
sys.path.insert(0, root)
sys.argv[0] = "tpexplain"
def outside():
    return sorted(n for n, m in list(sys.modules.items()) if n.split(".")[0] == "tpexplain"
                  and getattr(m, "__file__", None) and not os.path.realpath(m.__file__).startswith(root + os.sep))
try:
    from tpexplain.cli import main
    main()
finally:
    if outside():
        sys.stderr.write("compare_revisions: modules imported from outside %s: %s\\n" % (root, outside()))
        os._exit(3)
"""
NOT_COMPARED = frozenset({"stderr.txt", "rc.txt", "seconds.txt", "args.json", "state.txt"})   # the runner's own files


# ------------------------------------------------------------------------------------------------ running
def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def checkout(rev: str, tmp: Path, name: str) -> Path:
    """A detached worktree of `rev` in tmp/name."""
    path = tmp / name
    _git("worktree", "add", "--detach", str(path), rev)
    return path


def side_env(root: Path, cache: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TPEXPLAIN_")}
    env.update(TPEXPLAIN_COMPARE_ROOT=str(root), PYTHONPATH=str(root), TPEXPLAIN_HOME=str(cache),
               TPEXPLAIN_DEBUG="1", MPLBACKEND="Agg", PYTHONHASHSEED="0")
    return env


def probe(python: str, env: dict, cwd: Path) -> str:
    """Where `import tpexplain` finds the package with PYTHONPATH alone (no sys.path insertion)."""
    res = subprocess.run([python, "-c", "import tpexplain; print(tpexplain.__file__)"], env=env, cwd=cwd,
                         capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else f"(import failed: {res.stderr.strip()[-200:]})"


def run(python: str, args: list[str], folder: Path, env: dict, reuse: bool, timeout: float) -> tuple[int, float]:
    """Run one command in `folder` (emptied first): (exit status, seconds); the checkout's state in state.txt."""
    rc_file, args_file = folder / "rc.txt", folder / "args.json"
    if (reuse and rc_file.exists() and rc_file.read_text().strip() == "0" and args_file.exists()
            and json.loads(args_file.read_text()) == args):
        return 0, float((folder / "seconds.txt").read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    args_file.write_text(json.dumps(args))
    (folder / "state.txt").write_text(_describe(Path(env["TPEXPLAIN_COMPARE_ROOT"])) + "\n")
    t = time.perf_counter()
    with open(folder / "stdout.txt", "w") as so, open(folder / "stderr.txt", "w") as se:
        try:
            rc = subprocess.run([python, "-c", RUNNER, *args], cwd=folder, env=env, stdout=so, stderr=se,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    seconds = time.perf_counter() - t
    rc_file.write_text(str(rc))
    (folder / "seconds.txt").write_text(f"{seconds:.1f}")
    return rc, seconds


def last_error(folder: Path) -> str:
    lines = [ln for ln in (folder / "stderr.txt").read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip()[:100] if lines else "(no stderr)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="git revision before the change (required)")
    ap.add_argument("--head", default=None, help="a checkout folder or a revision (default: this working tree)")
    ap.add_argument("--out", default=None, help="output folder (default: a new temporary folder, kept)")
    ap.add_argument("--rtol", type=float, default=0.0, help="relative difference accepted (default 0: exact)")
    ap.add_argument("--only", default=None, help="comma list of command names (see --list)")
    ap.add_argument("--reuse", action="store_true", help="keep a side's earlier successful run in --out")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per command")
    ap.add_argument("--python", default=None, help="interpreter (default: the repository's .venv)")
    ap.add_argument("--head-like-base", action="store_true",
                    help="add to head's commands the switches that restore the base's defaults (BASE_DEFAULTS)")
    ap.add_argument("--list", action="store_true", help="print the commands and exit")
    opts = ap.parse_args(argv)
    if opts.list:
        for name, args in COMMANDS:
            print(f"{name:<20} tpexplain {' '.join(args)}")
        return 0
    if not opts.base:
        ap.error("--base is required")
    commands = COMMANDS
    if opts.only:
        wanted = [w.strip() for w in opts.only.split(",") if w.strip()]
        unknown = set(wanted) - {n for n, _ in COMMANDS}
        if unknown:
            ap.error(f"unknown command names {sorted(unknown)}; see --list")
        commands = [c for c in COMMANDS if c[0] in wanted]
    venv = REPO / ".venv" / "bin" / "python"
    python = opts.python or (str(venv) if venv.exists() else sys.executable)
    out = Path(opts.out or tempfile.mkdtemp(prefix="tpexplain-compare-")).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="tpexplain-worktrees-"))
    worktrees = []
    try:
        worktrees.append(checkout(opts.base, tmp, "base"))
        roots = {"base": worktrees[0]}
        if opts.head and Path(opts.head).is_dir():
            roots["head"] = Path(opts.head).resolve()
        elif opts.head:
            worktrees.append(checkout(opts.head, tmp, "head"))
            roots["head"] = worktrees[-1]
        else:
            roots["head"] = REPO
        return compare(roots, commands, python, out, tmp, opts)
    finally:
        for w in worktrees:
            subprocess.run(["git", "worktree", "remove", "--force", str(w)], cwd=REPO, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def compare(roots: dict[str, Path], commands, python: str, out: Path, tmp: Path, opts) -> int:
    """Run every command on both sides, compare, print the table; the exit status."""
    envs, placeholders = {}, {}
    for side, root in roots.items():
        envs[side] = side_env(root, tmp / f"{side}-cache")
        found = probe(python, envs[side], tmp)
        inside = os.path.realpath(found).startswith(os.path.realpath(root) + os.sep)
        print(f"{side}: {root} ({_describe(root)}); with PYTHONPATH alone tpexplain is {found} "
              f"({'inside the checkout' if inside else 'OUTSIDE the checkout: the runner puts it first'})")
        placeholders[side] = {str(out / side): "<OUT>", str(root): "<SRC>", str(tmp): "<TMP>"}
    print(f"outputs: {out}")
    table, failed, skipped, details = [], [], [], []
    for name, args in commands:
        status = {}
        for side in ("base", "head"):
            extra = BASE_DEFAULTS.get(args[0], []) if side == "head" and opts.head_like_base else []
            rc, sec = run(python, args + extra, out / side / name, envs[side], opts.reuse, opts.timeout)
            status[side] = rc
            state_file = out / side / name / "state.txt"
            state = state_file.read_text().strip() if state_file.exists() else "?"
            print(f"  {name:<20} {side}: exit {rc} in {sec:.0f} s [{state}]"
                  + (f" ({last_error(out / side / name)})" if rc else ""), flush=True)
        if status["base"] and status["head"]:
            msgs = {side: last_error(out / side / name) for side in status}
            skipped.append(f"{name}: fails on both sides (base: {msgs['base']}; head: {msgs['head']})")
            continue
        if status["base"] or status["head"]:
            bad = "base" if status["base"] else "head"
            failed.append(name)
            table.append((f"{name}/(run)", "differs", f"exit {status[bad]} on {bad} only: "
                          f"{last_error(out / bad / name)}"))
            continue
        for rel, diff, msg in compare_trees(out / "base" / name, out / "head" / name,
                                            placeholders["base"], placeholders["head"], NOT_COMPARED):
            details.append({"output": f"{name}/{rel}", "message": msg} if diff is None else
                           {"output": f"{name}/{rel}", **asdict(diff)})
            if diff is None:
                table.append((f"{name}/{rel}", "differs", msg))
            else:
                verdict = "same" if diff.identical else ("differs (within rtol)" if diff.within(opts.rtol)
                                                         else "differs")
                table.append((f"{name}/{rel}", verdict, diff.summary()))
    beyond = sum(1 for _, v, _ in table if v == "differs")
    same = sum(1 for _, v, _ in table if v == "same")
    w = max([len(r[0]) for r in table] + [6])
    lines = [f"{'output':<{w}}  {'result':<21}  detail"] + [f"{r:<{w}}  {v:<21}  {d}" for r, v, d in table]
    lines += [f"skipped: {s}" for s in skipped]
    lines += [f"commands failing on one side: {', '.join(failed)}" if failed else "no command failed on one side",
              f"{beyond} beyond --rtol {opts.rtol:g}", f"{same} same, {len(table) - same} differ"]
    text = "\n".join(lines)
    print(text)
    (out / "report.txt").write_text(text + "\n")
    # every difference in full (the table shows the first non-numeric one of each file)
    (out / "report.json").write_text(json.dumps({"table": table, "skipped": skipped, "files": details},
                                                indent=1, default=str) + "\n")
    return 1 if beyond else 0


def _describe(root: Path) -> str:
    """The checkout's commit, and a digest of its uncommitted changes (a working tree may change during a run)."""
    try:
        rev = _git("rev-parse", "--short", "HEAD", cwd=root)
        changes = subprocess.run(["git", "diff", "HEAD"], cwd=root, check=True, capture_output=True).stdout
        untracked = _git("ls-files", "--others", "--exclude-standard", "--", "tpexplain", cwd=root)
        if not changes and not untracked:
            return rev
        digest = hashlib.sha1(changes + untracked.encode()).hexdigest()[:8]
        return f"{rev} + uncommitted changes {digest}"
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "not a git checkout"


if __name__ == "__main__":
    sys.exit(main())
