"""Before/after check: run the same `tpexplain` commands with two revisions and compare every output file.

Usage:
    python bench/compare_revisions.py --base bd7682c [--head WORKTREE_OR_REV] [--out DIR] [--rtol 0]
                                      [--only NAME,NAME] [--reuse] [--list]

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

Comparison, one row per output file: images (png/jpg) decoded with OpenCV, pixel by pixel (differing pixels,
max difference); JSON, JSONL and CSV number by number (max absolute and relative difference; "last digit"
says every difference is at most one unit of the last printed digit, i.e. rounding of the printed value);
the explorer page's embedded data decoded (quantised attention bytes, float32 scales, crop image); text
line by line with paths and timings masked, numbers in them compared as numbers. "same" means
exactly equal. The last line is `N same, M differ`; the exit status is 1 when a difference exceeds --rtol
(relative, default 0: exact) or a command failed on one side only.

Re-run some commands into an earlier --out folder with `--only NAME --reuse` (--reuse keeps a side's run
that succeeded before). The full list takes about 5 minutes per side on 2 cores.
"""
from __future__ import annotations

import argparse
import base64
import csv
import difflib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

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
NOT_COMPARED = {"stderr.txt", "rc.txt", "seconds.txt", "args.json"}
IGNORED_KEYS = {"timings", "seconds", "elapsed", "duration", "time", "created", "date"}
TIMING = re.compile(r"\d+(?:\.\d+)?\s?(?:s|ms|sec|secs|seconds|min|it/s|s/it)\b", re.IGNORECASE)
PATH = re.compile(r"(?<![\w.<])(?:/|<SRC>|<OUT>|<TMP>)[^\s'\"`),;<>]+")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf)\b", re.IGNORECASE)


# ------------------------------------------------------------------------------------------- comparison
@dataclass
class Diff:
    """How two versions of one output differ: numbers (or pixels) compared, and non-numeric differences."""

    kind: str
    compared: int = 0          # numbers or pixels compared
    differing: int = 0         # of which differ
    max_abs: float = 0.0
    max_rel: float = 0.0       # |a - b| / max(|a|, |b|)
    beyond_digit: int = 0      # differences larger than one unit of the last printed digit (text numbers)
    digits: bool = True        # every differing number was read from text (so `beyond_digit` means something)
    other: list[str] = field(default_factory=list)   # non-numeric differences (structure, strings, text)
    worst: str = ""            # where the largest relative difference is, and its two values
    note: str = ""
    images: list[Diff] = field(default_factory=list)   # images embedded in a page, compared pixel by pixel

    def number(self, a, b, quantum: float | None = None, where: str = "") -> None:
        """Count one pair of numbers; `quantum` is the unit of their last printed digit, if read from text."""
        self.compared += 1
        fa, fb = float(a), float(b)
        if a == b or (math.isnan(fa) and math.isnan(fb)):
            return
        self.differing += 1
        d = abs(fa - fb) if not (math.isinf(fa) or math.isinf(fb) or math.isnan(fa) or math.isnan(fb)) else math.inf
        self.max_abs = max(self.max_abs, d)
        rel = d / max(abs(fa), abs(fb)) if d < math.inf else math.inf
        if rel > self.max_rel or not self.worst:
            self.max_rel, self.worst = max(rel, self.max_rel), f"{where}: {a} vs {b}"
        if quantum is None:
            self.digits = False
        elif d > quantum * (1 + 1e-9):
            self.beyond_digit += 1

    def array(self, a: np.ndarray, b: np.ndarray, what: str) -> None:
        """Element-wise comparison of two arrays of the same shape (else a structural difference)."""
        if a.shape != b.shape:
            self.other.append(f"{what}: shape {a.shape} vs {b.shape}")
            return
        a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
        self.compared += a.size
        d = np.abs(a - b)
        bad = d > 0
        if not bad.any():
            return
        self.differing += int(bad.sum())
        self.digits = False
        self.max_abs = max(self.max_abs, float(d.max()))
        rel = np.where(bad, d / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300), 0.0)
        i = int(rel.argmax())
        if rel[i] > self.max_rel or not self.worst:
            self.max_rel, self.worst = max(float(rel[i]), self.max_rel), f"{what}[{i}]: {a[i]:.9g} vs {b[i]:.9g}"

    @property
    def identical(self) -> bool:
        return self.differing == 0 and not self.other and all(d.identical for d in self.images)

    def within(self, rtol: float) -> bool:
        return not self.other and self.max_rel <= rtol and all(d.within(rtol) for d in self.images)

    def summary(self) -> str:
        embedded = f", {len(self.images)} embedded images" if self.images else ""
        if self.identical:
            return f"{self.compared} {'pixels' if self.kind == 'image' else 'values'}{embedded} equal" + self.note
        parts = [] if self.differing or self.other else [f"{self.compared} values equal"]
        if self.differing:
            unit = "pixels" if self.kind == "image" else "values"
            parts.append(f"{self.differing}/{self.compared} {unit} differ, max abs {self.max_abs:.3g}, "
                         f"max rel {self.max_rel:.3g} ({'within' if self.max_rel <= 1e-6 else 'beyond'} 1e-6 rel)")
            # a difference of one unit in the last printed digit is the printed rounding flipping
            if self.digits and not self.beyond_digit:
                parts.append("last printed digit only")
            elif self.digits and self.max_rel > 1e-6:
                parts.append(f"{self.beyond_digit} beyond the last printed digit")
            if self.worst:
                parts.append(self.worst if self.kind == "image" else f"largest at {self.worst}")
        if self.other:
            parts.append(f"{len(self.other)} other: {self.other[0]}")
        changed = [(i, d) for i, d in enumerate(self.images) if not d.identical]
        if changed:
            parts.append(f"{len(changed)}/{len(self.images)} embedded images differ, image {changed[0][0] + 1}: "
                         f"{changed[0][1].summary()}")
        elif self.images:
            parts.append(f"{len(self.images)} embedded images equal")
        return "; ".join(parts) + self.note


def compare_images(a: Path, b: Path) -> Diff:
    """Decoded pixels; `differing` counts pixels where any channel differs."""
    import cv2
    ia, ib = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (a, b))
    return _compare_pixels(ia, ib)


def _compare_pixels(ia, ib) -> Diff:
    diff = Diff("image")
    if ia is None or ib is None:
        diff.other.append("cannot decode")
    elif ia.shape != ib.shape:
        diff.other.append(f"size {ia.shape} vs {ib.shape}")
    else:
        d = np.abs(ia.astype(np.int32) - ib.astype(np.int32))
        d = d.max(axis=2) if d.ndim == 3 else d
        diff.compared = d.size
        diff.differing = int((d > 0).sum())
        diff.max_abs = float(d.max())
        diff.max_rel = diff.max_abs / 255.0 if ia.dtype == np.uint8 else float(d.max()) / max(1, int(ia.max()))
        diff.digits = False
        if diff.differing:
            ys, xs = np.nonzero(d)
            diff.worst = f"pixels within x {xs.min()}-{xs.max()}, y {ys.min()}-{ys.max()} of {d.shape[1]}x{d.shape[0]}"
    return diff


def _quantum(x) -> float | None:
    """The unit of a number's last printed digit, for a number printed rounded (at most 9 digits)."""
    if isinstance(x, Decimal) and x.is_finite():
        t = x.as_tuple()
        return 10.0 ** t.exponent if len(t.digits) <= 9 else None
    if isinstance(x, int) and not isinstance(x, bool):
        return 1.0
    return None


def compare_values(a, b, diff: Diff, where: str = "$") -> Diff:
    """Walk two parsed JSON values side by side; numbers are compared as numbers, paths and timings skipped."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in IGNORED_KEYS:
                continue
            if k not in a or k not in b:
                diff.other.append(f"{where}.{k} only in {'head' if k not in a else 'base'}")
            else:
                compare_values(a[k], b[k], diff, f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diff.other.append(f"{where}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            compare_values(x, y, diff, f"{where}[{i}]")
    elif isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        diff.array(a, b, where)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        diff.other.append(f"{where}: {type(a).__name__} vs {type(b).__name__}")
    elif _is_number(a) and _is_number(b):
        qa, qb = _quantum(a), _quantum(b)
        diff.number(a, b, max(qa, qb) if qa is not None and qb is not None else None, where)
    elif isinstance(a, str) and isinstance(b, str) and _is_path(a) and _is_path(b):
        pass
    elif a != b or type(a) is not type(b):
        diff.other.append(f"{where}: {_short(a)} vs {_short(b)}")
    return diff


def _is_number(x) -> bool:
    return isinstance(x, (int, float, Decimal)) and not isinstance(x, bool)


def _is_path(s: str) -> bool:
    return s.startswith(("/", "<SRC>", "<OUT>")) and "/" in s


def _short(x) -> str:
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


def _load_json(text: str):
    return json.loads(text, parse_float=Decimal, parse_constant=float)


def compare_json(a: Path, b: Path) -> Diff:
    """Two JSON files, or JSON-lines files (one value per line), number by number."""
    ta, tb = a.read_text(), b.read_text()
    diff = Diff("json")
    if a.suffix == ".jsonl":
        va = [_load_json(line) for line in ta.splitlines() if line.strip()]
        vb = [_load_json(line) for line in tb.splitlines() if line.strip()]
    else:
        va, vb = _load_json(ta), _load_json(tb)
    compare_values(va, vb, diff)
    if diff.identical and ta != tb:
        diff.note = " (bytes differ)"
    return diff


def _cells(text: str) -> list[list]:
    rows = []
    for row in csv.reader(io.StringIO(text)):
        rows.append([_cell(c) for c in row])
    return rows


def _cell(c: str):
    try:
        return int(c) if re.fullmatch(r"[-+]?\d+", c) else Decimal(c) if NUMBER.fullmatch(c) else c
    except ArithmeticError:
        return c


def compare_csv(a: Path, b: Path) -> Diff:
    """Two CSV files cell by cell; numeric cells as numbers."""
    diff = Diff("csv")
    compare_values(_cells(a.read_text()), _cells(b.read_text()), diff)
    return diff


def masked_lines(text: str, roots: dict[str, str] | None = None) -> list[str]:
    """The lines of a text output with its paths and timings replaced by <path> and <time>."""
    for root, name in (roots or {}).items():
        text = text.replace(root, name)
    return [TIMING.sub("<time>", PATH.sub("<path>", line)).rstrip() for line in text.splitlines()]


def _snippet(x: str, y: str) -> str:
    """The two lines around their first difference."""
    i = next((k for k, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))
    lo = max(0, i - 25)
    return f"{x[lo:i + 35]!r} vs {y[lo:i + 35]!r}"


def compare_text(ta: str, tb: str, roots_a: dict | None = None, roots_b: dict | None = None) -> Diff:
    """Line by line, paths and timings masked; a line whose words match is compared number by number."""
    diff = Diff("text")
    la, lb = masked_lines(ta, roots_a), masked_lines(tb, roots_b)
    # align first, so one added line is one difference and not a shift of everything after it
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, la, lb, autojunk=False).get_opcodes():
        if op == "equal":
            diff.compared += sum(len(NUMBER.findall(x)) for x in la[i1:i2])
        elif op == "replace" and i2 - i1 == j2 - j1:
            for i, (x, y) in enumerate(zip(la[i1:i2], lb[j1:j2]), i1 + 1):
                if NUMBER.split(x) != NUMBER.split(y):
                    diff.other.append(f"line {i}: {_snippet(x, y)}")
                    continue
                for u, v in zip(NUMBER.findall(x), NUMBER.findall(y)):
                    du, dv = _cell(u), _cell(v)
                    qu, qv = _quantum(du), _quantum(dv)
                    diff.number(du, dv, max(qu, qv) if qu is not None and qv is not None else None, f"line {i}")
        else:
            x, y = "\n".join(la[i1:i2]), "\n".join(lb[j1:j2])
            diff.other.append(f"{i2 - i1} line(s) at base line {i1 + 1} vs {j2 - j1} at head line {j1 + 1}: "
                              f"{_snippet(x, y)}")
    return diff


EXPLORER = re.compile(r"const D = (.*?);\n", re.DOTALL)


def explorer_data(html_text: str) -> tuple[dict | None, str]:
    """The explorer page's embedded data with its base64 arrays decoded, and the page without it (its crop
    image is left to `embedded_images`)."""
    m = EXPLORER.search(html_text)
    if not m:
        return None, html_text
    data = _load_json(m.group(1))
    for key in ("layers", "keypointLayers"):
        data[key] = [{"bytes": np.frombuffer(base64.b64decode(layer["data"]), np.uint8),
                      "scale": np.frombuffer(base64.b64decode(layer["scale"]), "<f4")} for layer in data.get(key, [])]
    if "lut" in data:
        data["lut"] = np.frombuffer(base64.b64decode(data["lut"]), np.uint8)
    return data, html_text[:m.start(1)] + "__DATA__" + html_text[m.end(1):]


DATA_URI = re.compile(r"data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)")


def embedded_images(html_text: str) -> tuple[list, str]:
    """The decoded data: URI images of a page, and the page with __IMAGE<n>__ in their place."""
    import cv2
    images = []

    def take(m):
        images.append(cv2.imdecode(np.frombuffer(base64.b64decode(m.group(1)), np.uint8), cv2.IMREAD_UNCHANGED))
        return f"__IMAGE{len(images) - 1}__"
    return images, DATA_URI.sub(take, html_text)


def compare_html(a: Path, b: Path, roots_a: dict | None = None, roots_b: dict | None = None) -> Diff:
    """A page: embedded images pixel by pixel, an explorer page's data as numbers, the rest as text."""
    (ia, ta), (ib, tb) = embedded_images(a.read_text()), embedded_images(b.read_text())
    (da, pa), (db, pb) = explorer_data(ta), explorer_data(tb)
    if da is None or db is None:
        diff = compare_text(pa, pb, roots_a, roots_b)
    else:
        diff = compare_values(da, db, Diff("explorer"))
        page = compare_text(pa, pb, roots_a, roots_b)
        diff.other += page.other
        if page.differing:
            diff.other.append(f"page text: {page.summary()}")
    if len(ia) != len(ib):
        diff.other.append(f"{len(ia)} vs {len(ib)} embedded images")
    diff.images = [_compare_pixels(x, y) for x, y in zip(ia, ib)]
    return diff


def compare_file(a: Path, b: Path, roots_a: dict | None = None, roots_b: dict | None = None) -> Diff:
    """Compare two versions of one output by its kind (from the file name)."""
    ext = a.suffix.lower()
    if ext in (".png", ".jpg", ".jpeg"):
        return compare_images(a, b)
    if ext in (".json", ".jsonl"):
        return compare_json(a, b)
    if ext == ".csv":
        return compare_csv(a, b)
    if ext in (".html", ".htm"):
        return compare_html(a, b, roots_a, roots_b)
    ba, bb = a.read_bytes(), b.read_bytes()
    try:
        return compare_text(ba.decode(), bb.decode(), roots_a, roots_b)
    except UnicodeDecodeError:
        return Diff("bytes", other=["bytes differ"] if ba != bb else [])


def compare_trees(a: Path, b: Path, roots_a: dict | None = None, roots_b: dict | None = None) -> list[tuple]:
    """(relative path, Diff or None, message) for every file of either folder (NOT_COMPARED files aside)."""
    files = sorted({p.relative_to(d).as_posix() for d in (a, b) if d.exists() for p in d.rglob("*")
                    if p.is_file() and p.name not in NOT_COMPARED})
    rows = []
    for rel in files:
        pa, pb = a / rel, b / rel
        if not pa.exists() or not pb.exists():
            rows.append((rel, None, f"only in {'base' if pa.exists() else 'head'}"))
            continue
        try:
            rows.append((rel, compare_file(pa, pb, roots_a, roots_b), ""))
        except Exception as exc:   # a file one side wrote badly is a difference to report, not a crash
            rows.append((rel, None, f"cannot compare: {type(exc).__name__}: {exc}"))
    return rows


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
    """Run one command in `folder` (emptied first): (exit status, seconds)."""
    rc_file, args_file = folder / "rc.txt", folder / "args.json"
    if (reuse and rc_file.exists() and rc_file.read_text().strip() == "0" and args_file.exists()
            and json.loads(args_file.read_text()) == args):
        return 0, float((folder / "seconds.txt").read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    args_file.write_text(json.dumps(args))
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
            rc, sec = run(python, args, out / side / name, envs[side], opts.reuse, opts.timeout)
            status[side] = rc
            print(f"  {name:<20} {side}: exit {rc} in {sec:.0f} s" + (f" ({last_error(out / side / name)})"
                                                                       if rc else ""), flush=True)
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
                                            placeholders["base"], placeholders["head"]):
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
    try:
        rev = _git("rev-parse", "--short", "HEAD", cwd=root)
        dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=root)
        return f"{rev}{' + uncommitted changes' if dirty else ''}"
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "not a git checkout"


if __name__ == "__main__":
    sys.exit(main())
