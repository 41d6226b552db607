"""Compare two versions of a program's output files: images by pixel, JSON/CSV by number, text by line.

Used by bench/compare_revisions.py (the before/after check of a restructuring) and tested by
tests/test_compare_revisions.py. "Identical" means exactly equal; every difference is measured (count, max
absolute and relative difference, where the largest is) so rounding can be told from real change.
"""
from __future__ import annotations

import base64
import csv
import difflib
import io
import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

IGNORED_KEYS = {"timings", "seconds", "elapsed", "duration", "time", "created", "date"}
TIMING = re.compile(r"\d+(?:\.\d+)?\s?(?:s|ms|sec|secs|seconds|min|it/s|s/it)\b", re.IGNORECASE)
PATH = re.compile(r"(?<![\w.<])(?:/|<SRC>|<OUT>|<TMP>)[^\s'\"`),;<>]+")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf)\b", re.IGNORECASE)


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


def compare_trees(a: Path, b: Path, roots_a: dict | None = None, roots_b: dict | None = None,
                  skip: frozenset[str] = frozenset()) -> list[tuple]:
    """(relative path, Diff or None, message) for every file of either folder, but those named in `skip`."""
    files = sorted({p.relative_to(d).as_posix() for d in (a, b) if d.exists() for p in d.rglob("*")
                    if p.is_file() and p.name not in skip})
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
