"""Figures for many people at once: every core, a progress bar, resumable, one bad image never stops a run.

    items = coco_items("person_keypoints_val2017.json", "val2017/")
    summary = run_batch(items, ["attention"], "figs/", jobs=4)

Each person is one task: its image is read and explained once, then every figure kind asked for is drawn
from that one Explanation. Workers are separate processes (spawned, one torch thread each) that load the
model once. Outputs are written atomically, so a figure on disk is always whole; the manifest (JSON lines,
one row per output) records what was made with which options, and an output counts as complete when its
file exists and its manifest row says "ok" with the same options. A re-run therefore does only what is
missing or failed.
"""
from __future__ import annotations

import concurrent.futures as cf
import csv
import html
import json
import multiprocessing
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TextIO

from ..keypoints import COCO_KEYPOINTS

FIGURE_KINDS = ("attention", "layers", "occlusion")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm")
MANIFEST = "manifest.jsonl"
INDEX = "index.html"


@dataclass(frozen=True)
class Item:
    """One person to explain: an image file and a box (x, y, w, h); no box means the whole image."""

    image: str
    person: str                                   # "image", "box3", "ann442619", ...
    bbox: tuple[float, float, float, float] | None = None
    name: str | None = None                       # output stem, when the derived one would collide

    @property
    def key(self) -> str:
        """The stem of this person's output files."""
        if self.name:
            return self.name
        stem = _safe(Path(self.image).stem)
        return stem if self.person == "image" else f"{stem}_{self.person}"


@dataclass(frozen=True)
class FigureOptions:
    """What each figure kind draws; only the fields a kind uses decide whether its output is up to date."""

    keypoints: tuple[str, ...] = COCO_KEYPOINTS   # attention, layers
    layers: str = "last"                          # attention: "last", "all" or 1-based numbers "1,3"
    mode: str = "dependency"                      # attention: dependency | affected
    head: int | None = None                       # attention, layers: one head (default: mean of heads)
    where: str = "crop"                           # attention: crop | image
    occlusion_keypoint: str = "l_ankle"           # occlusion: the keypoint whose prediction is studied
    part: str | None = None                       # occlusion: named body part to hide
    region: tuple[float, float, float, float] | None = None  # occlusion: box to hide (image pixels)
    fill: str = "mean"                            # occlusion: mean | blur | noise
    flip: bool = True
    dpi: int = 120
    format: str = "png"

    def signature(self, kind: str) -> dict:
        """The options that determine `kind`'s output (stored in the manifest)."""
        common = {"flip": self.flip, "dpi": self.dpi, "format": self.format}
        if kind == "attention":
            own = {"keypoints": list(self.keypoints), "layers": self.layers, "mode": self.mode,
                   "head": self.head, "where": self.where}
        elif kind == "layers":
            own = {"keypoints": list(self.keypoints), "head": self.head}
        elif kind == "occlusion":
            own = {"keypoint": self.occlusion_keypoint, "part": self.part,
                   "region": list(self.region) if self.region else None, "fill": self.fill}
        else:
            raise ValueError(f"unknown figure kind '{kind}'; use {', '.join(FIGURE_KINDS)}")
        return {**own, **common}


@dataclass
class BatchSummary:
    """What a run did. `failures` lists (input, person, figure, error)."""

    persons: int = 0
    made: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[tuple[str, str, str, str]] = field(default_factory=list)
    seconds: float = 0.0
    out_dir: str = ""
    manifest: str = ""
    index: str = ""
    interrupted: bool = False

    @property
    def failed_inputs(self) -> int:
        return len({(f[0], f[1]) for f in self.failures})

    def __str__(self) -> str:
        text = (f"{self.persons} persons: {self.made} figures made, {self.skipped} up to date (skipped), "
                f"{self.failed} failed")
        if self.failed:
            text += f" ({self.failed_inputs} person{'s' if self.failed_inputs != 1 else ''})"
        text += f" in {self.seconds:.1f}s; gallery {self.index}"
        return ("interrupted: " if self.interrupted else "") + text

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td>"
                       f"<td>{html.escape(d)}</td></tr>" for a, b, c, d in self.failures[:20])
        failures = (f"<table><tr><th>input</th><th>person</th><th>figure</th><th>error</th></tr>{rows}</table>"
                    if rows else "")
        return f"<p>{html.escape(str(self))}</p>{failures}"


# ---------------------------------------------------------------------------------------------- inputs

def folder_items(folder: str | Path, boxes: str | Path | None = None) -> list[Item]:
    """Every image in `folder` taken whole, or the people that a boxes file lists.

    A boxes file is JSON ({"img.jpg": [[x, y, w, h], ...], ...}) or CSV (image,x,y,w,h per line, with or
    without a header); image names are relative to `folder`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"image folder not found: {folder}")
    if boxes is None:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
        return _unique([Item(str(p), "image") for p in files])
    items = []
    for name, bxs in _read_boxes(boxes).items():
        for i, b in enumerate(bxs):
            items.append(Item(str(folder / name), f"box{i}", tuple(float(v) for v in b)))
    if not items:
        raise ValueError(f"no boxes in {boxes}")
    return _unique(items)


def coco_items(annotations: str | Path, images: str | Path) -> list[Item]:
    """Every person instance with at least one labelled keypoint (not crowds), its bbox as the box."""
    annotations, images = Path(annotations), Path(images)
    if not annotations.is_file():
        raise ValueError(f"annotation file not found: {annotations}")
    if not images.is_dir():
        raise ValueError(f"image folder not found: {images}")
    try:
        data = json.loads(annotations.read_text())
        files = {im["id"]: im["file_name"] for im in data["images"]}
        anns = data["annotations"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a COCO annotation file: {annotations} ({exc})") from None
    items = []
    for a in anns:
        if a.get("iscrowd", 0) or a.get("num_keypoints", 0) <= 0 or a.get("image_id") not in files:
            continue
        x, y, w, h = (float(v) for v in a["bbox"])
        if w <= 0 or h <= 0:
            continue
        items.append(Item(str(images / files[a["image_id"]]), f"ann{a['id']}", (x, y, w, h)))
    if not items:
        raise ValueError(f"no person annotations with keypoints in {annotations}")
    return _unique(items)


def _read_boxes(path: str | Path) -> dict[str, list]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"boxes file not found: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
            return {str(k): [list(b) for b in v] for k, v in data.items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"bad boxes file {path}: expected {{\"image\": [[x, y, w, h], ...]}} ({exc})") from None
    out: dict[str, list] = {}
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or row[0].startswith("#"):
            continue
        try:
            box = [float(v) for v in row[1:5]]
        except ValueError:
            if n == 1:          # a header line
                continue
            raise ValueError(f"bad boxes file {path} line {n}: expected image,x,y,w,h") from None
        if len(box) != 4:
            raise ValueError(f"bad boxes file {path} line {n}: expected image,x,y,w,h")
        out.setdefault(row[0].strip(), []).append(box)
    return out


def _unique(items: list[Item]) -> list[Item]:
    # two images with one stem (a.jpg, a.png) would write the same outputs: those keep their suffix
    count: dict[str, int] = {}
    for it in items:
        count[it.key] = count.get(it.key, 0) + 1
    out, seen = [], set()
    for it in items:
        if count[it.key] > 1:
            it = Item(it.image, it.person, it.bbox, name=f"{it.key}_{_safe(Path(it.image).suffix.lstrip('.'))}")
        if (it.image, it.person) not in seen:
            seen.add((it.image, it.person))
            out.append(it)
    return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "image"


def output_name(item: Item, kind: str, options: FigureOptions) -> str:
    return f"{item.key}_{kind}.{options.format}"


# ---------------------------------------------------------------------------------------------- manifest

def read_manifest(path: str | Path) -> list[dict]:
    """The rows of a manifest; a line cut short by an interrupted run is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "output" in row:
            rows.append(row)
    return rows


def _latest(rows: Iterable[dict]) -> dict[str, dict]:
    return {r["output"]: r for r in rows}


def is_complete(row: dict | None, out_dir: Path, signature: dict, model: str, checkpoint: str) -> bool:
    """Whether an output needs no work: written (atomically, so whole) and recorded ok with these options
    by this model with these very weights."""
    return (row is not None and row.get("status") == "ok" and row.get("options") == signature
            and row.get("model") == model and row.get("checkpoint") == checkpoint
            and (out_dir / row["output"]).is_file())


def checkpoint_fingerprint(model_name: str, weights: str | None) -> str:
    """A short hash of the checkpoint's bytes: figures from other weights (a retrained model) are redone."""
    import hashlib
    if weights == "random":
        return "random"
    if weights is None:
        from .. import zoo
        path = zoo.checkpoint_path(model_name)
        if path is None:
            return "missing"
    else:
        path = Path(weights)
        if not path.is_file():
            return "missing"
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _clean_stale_temporaries(out_dir: Path, names: set[str]) -> None:
    # a worker killed mid-write leaves atomic_path's hidden temporary (.<stem>.<random><suffix>) behind
    for p in out_dir.glob(".*"):
        m = re.fullmatch(r"\.(.+)\.[A-Za-z0-9_]{8}(\.\w+)", p.name)
        if m and m.group(1) + m.group(2) in names | {MANIFEST, INDEX}:
            try:
                p.unlink()
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _init_worker(model_name: str, weights: str | None, spawned: bool) -> None:
    """Runs once in each worker process (one torch thread, headless drawing), or in-process for one job."""
    if spawned:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides what an interrupt stops
        import cv2
        import matplotlib
        import torch
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        matplotlib.use("Agg")
    _WORKER.clear()
    try:
        from ..api import load
        _WORKER["model"] = load(model_name, weights)
    except Exception as exc:  # reported per task, so the parent sees a reason, not a broken pool
        _WORKER["error"] = f"cannot load model '{model_name}': {exc}"


def _process(item: Item, kinds: list[str], options: FigureOptions, out_dir: str) -> list[dict]:
    """Explain one person and draw each figure kind; every failure becomes a row, never an exception."""
    t0 = time.perf_counter()
    rows = [{"input": item.image, "person": item.person, "bbox": list(item.bbox) if item.bbox else None,
             "figure": kind, "output": output_name(item, kind, options), "status": "failed",
             "options": options.signature(kind), "keypoints": None, "error": None,
             "timings": {}} for kind in kinds]
    try:
        if "error" in _WORKER:
            raise RuntimeError(_WORKER["error"])
        pm = _WORKER["model"]
        from ..io import parse_bbox, read_image
        image = read_image(item.image)
        box = parse_bbox(",".join(map(str, item.bbox)), image.shape) if item.bbox else None
        t_read = time.perf_counter() - t0
        ex = None
        if any(k in ("attention", "layers") for k in kinds):
            t = time.perf_counter()
            ex = pm.explain(image, bbox=box, flip=options.flip)
            t_explain = time.perf_counter() - t
        else:
            t_explain = 0.0
    except Exception as exc:
        for r in rows:
            r["error"] = _one_line(exc)
            r["timings"] = {"total": round(time.perf_counter() - t0, 3)}
        return rows
    keypoints = _keypoint_record(ex) if ex is not None else None
    for kind, row in zip(kinds, rows):
        t = time.perf_counter()
        try:
            path = Path(out_dir) / row["output"]
            row["results"], shown = _make_figure(kind, pm, ex, image, box, options, path)
            row["keypoints"] = keypoints or _keypoint_record(shown)
            row["status"] = "ok"
        except Exception as exc:
            row["error"] = _one_line(exc)
        row["timings"] = {"read": round(t_read, 3), "explain": round(t_explain, 3),
                          "figure": round(time.perf_counter() - t, 3)}
    return rows


def _make_figure(kind: str, pm, ex, image, box, options: FigureOptions, path: Path) -> tuple[dict | None, object]:
    """Draw and atomically save one figure: (the numbers behind it for the manifest, the clean Explanation)."""
    if kind == "attention":
        layers = _resolve_layers(options.layers, ex.num_layers)
        if len(options.keypoints) == 1 and len(layers) == 1:
            fig = ex.attention_map(options.mode, options.keypoints[0], layers[0], options.head).figure(options.where)
        else:
            fig = ex.grid(list(options.keypoints), layers, options.mode, options.head, options.where)
        _save(fig, path, options)
        return None, ex
    if kind == "layers":
        from ..analysis.depth import layer_study
        study = layer_study(ex, list(options.keypoints), head=options.head)
        _save(study.figure(options.where), path, options)
        return {"metrics": _rounded(study.metrics)}, ex
    if kind == "occlusion":
        from ..analysis.occlusion import occlusion_study
        study = occlusion_study(pm, image, options.occlusion_keypoint, bbox=box, region=options.region,
                                part=options.part, fill=options.fill, flip=options.flip)
        _save(study.figure(), path, options)
        return _rounded(study.summary()), study.before
    raise ValueError(f"unknown figure kind '{kind}'; use {', '.join(FIGURE_KINDS)}")


def _rounded(value):
    """JSON-ready numbers, 4 significant digits: the manifest is for reading, not for re-computing."""
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


def _save(fig, path: Path, options: FigureOptions) -> None:
    from ..figures import save_figure
    save_figure(fig, path, dpi=options.dpi)
    _shareable(path)


def _shareable(path: Path) -> None:
    # the atomic write's temporary file is private (0600); a gallery is for sharing, so use the umask
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _resolve_layers(spec: str, num_layers: int) -> list[int]:
    t = spec.strip().lower()
    if t == "last":
        return [num_layers - 1]
    if t == "all":
        return list(range(num_layers))
    try:
        layers = [int(p) - 1 for p in t.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"bad layers '{spec}': use 1..{num_layers}, last or all") from None
    bad = [n + 1 for n in layers if not 0 <= n < num_layers]
    if bad or not layers:
        raise ValueError(f"layers '{spec}' out of range: the model has {num_layers} encoder layers")
    return layers


def _keypoint_record(ex) -> dict:
    return {name: [round(float(x), 1), round(float(y), 1), round(float(s), 3)]
            for name, (x, y, s) in zip(ex.keypoint_names, ex.keypoints)}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------- progress

class Progress:
    """A one-line progress bar with rate and ETA on a terminal; periodic plain lines otherwise (logs)."""

    def __init__(self, total: int, unit: str = "persons", stream: TextIO | None = None, enabled: bool = True):
        self.total, self.unit, self.done, self.failed = total, unit, 0, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled and total > 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self._last = 0.0
        self.draw(force=True)

    def update(self, n: int = 1, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        self.draw(force=self.done >= self.total)

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        eta = (self.total - self.done) / rate if rate else None
        frac = self.done / self.total if self.total else 1.0
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        text = (f"{frac * 100:3.0f}% [{bar}] {self.done}/{self.total} {self.unit} "
                f"{_clock(elapsed)} elapsed, {rate:.2f} {self.unit}/s, ETA {_clock(eta) if eta is not None else '?'}")
        return text + (f", {self.failed} failed" if self.failed else "")

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        # a terminal redraws in place several times a second; a log file gets a line every 10 s at most
        if not force and now - self._last < (0.2 if self.tty else 10.0):
            return
        self._last = now
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line())
            if self.done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print a line above the bar."""
        if self.enabled and self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.enabled and self.tty and self.done < self.total:
            self.stream.write(self.line())
            self.stream.flush()


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# ---------------------------------------------------------------------------------------------- the run

def run_batch(items: list[Item], figures: Iterable[str], out_dir: str | Path, model_name: str = "default",
              weights: str | None = None, jobs: int | None = None, options: FigureOptions | None = None,
              force: bool = False, progress: bool = True, log: Callable[[str], None] | None = None,
              stream: TextIO | None = None) -> BatchSummary:
    """Make each figure kind for each person into `out_dir`, skipping outputs that are already complete.

    `jobs` worker processes (default: every core) each load the model once. Writes `manifest.jsonl` and
    `index.html` into `out_dir`. Failures are logged and counted in the summary, never raised.
    """
    t_start = time.monotonic()
    options = options or FigureOptions()
    kinds = _check_kinds(figures)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise ValueError(f"output folder is not writable: {out}")
    weights = str(weights) if weights is not None else None
    stream = stream or sys.stderr

    manifest_path = out / MANIFEST
    previous = _latest(read_manifest(manifest_path))
    checkpoint = checkpoint_fingerprint(model_name, weights)
    todo: list[tuple[Item, list[str]]] = []
    skipped = 0
    names = set()
    for it in items:
        pending = []
        for kind in kinds:
            name = output_name(it, kind, options)
            names.add(name)
            if not force and is_complete(previous.get(name), out, options.signature(kind), model_name, checkpoint):
                skipped += 1
            else:
                pending.append(kind)
        if pending:
            todo.append((it, pending))
    _clean_stale_temporaries(out, names)

    summary = BatchSummary(persons=len(items), skipped=skipped, out_dir=str(out), manifest=str(manifest_path),
                           index=str(out / INDEX))
    bar = Progress(len(todo), stream=stream, enabled=progress)
    say = log or bar.message
    if skipped:
        say(f"{skipped} figure{'s' if skipped != 1 else ''} already complete in {out}: skipped")
    if todo:
        _check_model(model_name, weights, options, kinds)

    def record(rows: list[dict]) -> None:
        failed = 0
        with open(manifest_path, "a") as fh:
            for r in rows:
                r["model"], r["weights"], r["checkpoint"] = model_name, weights, checkpoint
                fh.write(json.dumps(r) + "\n")
                if r["status"] == "ok":
                    summary.made += 1
                else:
                    failed += 1
                    summary.failed += 1
                    summary.failures.append((r["input"], r["person"], r["figure"], r["error"] or "?"))
                    say(f"failed: {r['input']} ({r['person']}, {r['figure']}): {r['error']}")
            fh.flush()
            os.fsync(fh.fileno())
        bar.update(1, failed=1 if failed else 0)

    jobs = max(1, min(jobs or available_cores(), len(todo) or 1))
    try:
        if todo and jobs == 1:
            _init_worker(model_name, weights, spawned=False)
            for it, pending in todo:
                record(_process(it, pending, options, str(out)))
        elif todo:
            _run_pool(todo, options, out, model_name, weights, jobs, record)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        _WORKER.clear()
        _finish(out, summary, model_name, time.monotonic() - t_start)
    if summary.interrupted:
        say(f"{summary}; run the same command again to resume")
        raise KeyboardInterrupt
    return summary


def available_cores() -> int:
    """The cores this process may use (its CPU affinity, which a container or taskset can narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run_pool(todo, options, out: Path, model_name, weights, jobs: int, record) -> None:
    # spawn: a fresh interpreter per worker, never a fork of a parent holding torch threads or locks
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                  initargs=(model_name, weights, True))
    futures = {pool.submit(_process, it, pending, options, str(out)): (it, pending) for it, pending in todo}
    recorded = set()
    try:
        for fut in cf.as_completed(futures):
            recorded.add(fut)
            record(_result(fut, *futures[fut], options))
    except KeyboardInterrupt:
        # let the running tasks finish their (atomic) writes and record them; drop the queued ones
        pool.shutdown(wait=True, cancel_futures=True)
        for fut, (it, pending) in futures.items():
            if fut.done() and not fut.cancelled() and fut not in recorded:
                record(_result(fut, it, pending, options))
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _result(fut: cf.Future, item: Item, kinds: list[str], options: FigureOptions) -> list[dict]:
    try:
        return fut.result()
    except Exception as exc:  # a worker died (e.g. killed for memory): this person fails, the run goes on
        return [{"input": item.image, "person": item.person, "bbox": list(item.bbox) if item.bbox else None,
                 "figure": k, "output": output_name(item, k, options), "status": "failed",
                 "options": options.signature(k), "keypoints": None, "timings": {},
                 "error": f"worker failed: {_one_line(exc)}"} for k in kinds]


def _check_kinds(figures: Iterable[str]) -> list[str]:
    kinds = []
    for k in figures:
        k = k.strip().lower()
        if not k:
            continue
        if k not in FIGURE_KINDS:
            raise ValueError(f"unknown figure kind '{k}'; use {', '.join(FIGURE_KINDS)}")
        if k not in kinds:
            kinds.append(k)
    if not kinds:
        raise ValueError(f"no figure kinds given; use {', '.join(FIGURE_KINDS)}")
    return kinds


def _check_model(model_name: str, weights: str | None, options: FigureOptions, kinds: list[str]) -> None:
    """Fail once, before any worker starts, for what would otherwise fail for every person."""
    from .. import zoo
    from ..zoo.checkpoint import CheckpointError
    from ..keypoints import keypoint_index
    zoo.entry(model_name)
    if weights is None and zoo.checkpoint_path(model_name) is None:
        raise CheckpointError(zoo.missing_weights_message(model_name))
    if weights not in (None, "random") and not Path(weights).is_file():
        raise ValueError(f"weights file not found: {weights}")
    for k in options.keypoints:
        keypoint_index(k)
    if "attention" in kinds and options.layers.strip().lower() not in ("last", "all"):
        from ..record import attention_modules
        _resolve_layers(options.layers, len(attention_modules(zoo.build(model_name))))


def _finish(out: Path, summary: BatchSummary, model_name: str, seconds: float) -> None:
    """Compact the manifest (latest row per output) and write the gallery, both atomically."""
    rows = sorted(_latest(read_manifest(out / MANIFEST)).values(),
                  key=lambda r: (r["input"], r["person"], r["output"]))
    # rewritten only when changed, so a run that had nothing to do leaves every file untouched
    _write_if_changed(out / MANIFEST, "".join(json.dumps(r) + "\n" for r in rows) if rows else None)
    _write_if_changed(out / INDEX, gallery_html(rows, title=f"tpexplain batch · {model_name}"))
    summary.seconds = seconds


def _write_if_changed(path: Path, text: str | None) -> None:
    from ..io import write_text_atomic
    if text is None or (path.exists() and path.read_text(errors="replace") == text):
        return
    write_text_atomic(path, text)
    _shareable(path)


def gallery_html(rows: list[dict], title: str = "tpexplain batch") -> str:
    """A static page of every output in a manifest, grouped by person; failures listed first."""
    e = html.escape
    people: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        people.setdefault((r["input"], r["person"]), []).append(r)
    failed = [r for r in rows if r.get("status") != "ok"]
    ok = sum(1 for r in rows if r.get("status") == "ok")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}"
             ".card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;margin:0 0 10px}"
             ".figs{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}"
             ".fig img{height:240px;max-width:100%;object-fit:contain;display:block}"
             ".cap{font-size:12px;color:#555;word-break:break-all}.bad{border-color:#c33}"
             ".err{color:#b00;font-size:12px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
             "</style></head><body>",
             f"<h1>{e(title)}</h1><p>{len(people)} persons, {ok} figures, {len(failed)} failed</p>"]
    if failed:
        parts.append("<h2>Failed</h2><table><tr><th>input</th><th>person</th><th>figure</th><th>error</th></tr>")
        parts += [f"<tr><td>{e(r['input'])}</td><td>{e(r['person'])}</td><td>{e(r['figure'])}</td>"
                  f"<td class='err'>{e(str(r.get('error')))}</td></tr>" for r in failed]
        parts.append("</table>")
    parts.append("<h2>Figures</h2><p class='cap'>Click a figure for full size.</p><div>")
    for (inp, person), rs in people.items():
        bad = any(r.get("status") != "ok" for r in rs)
        parts.append(f"<div class='card{' bad' if bad else ''}'><div class='cap'><b>{e(Path(inp).name)}</b> · "
                     f"{e(person)}{' · box ' + e(', '.join(f'{v:g}' for v in rs[0]['bbox'])) if rs[0].get('bbox') else ''}"
                     "</div><div class='figs'>")
        for r in rs:
            src = e(r["output"])
            if r.get("status") == "ok":
                tag = (f"<a href='{src}'><img loading='lazy' src='{src}' alt='{e(r['figure'])}'></a>"
                       if not src.endswith(".pdf") else f"<a href='{src}'>{src}</a>")
                parts.append(f"<div class='fig'><div class='cap'>{e(r['figure'])}</div>{tag}</div>")
            else:
                parts.append(f"<div class='fig err'>{e(r['figure'])}: {e(str(r.get('error')))}</div>")
        parts.append("</div></div>")
    parts.append("</div></body></html>\n")
    return "".join(parts)
