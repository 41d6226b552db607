"""The batch manifest (JSON lines, one row per output) and resuming: which outputs are already complete."""
from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from .inputs import Item, Skip
from .options import FigureOptions

MANIFEST = "manifest.jsonl"
# the status of an input's image or annotation left out (with its "reason"); manifests written before
# this name was chosen say "skipped", which is read as this one
NOT_EXPLAINED = "not explained"
_OLD_NOT_EXPLAINED = "skipped"


def output_name(item: Item, kind: str, options: FigureOptions) -> str:
    """The file name of one person's figure of one kind."""
    return f"{item.key}_{kind}.{options.format}"


def person_rows(item: Item, kinds: list[str], options: FigureOptions, error: str | None = None) -> list[dict]:
    """One manifest row per figure kind for `item`, marked failed until its figure is made. `truth` is the
    digest of its ground truth (None without); `accuracy` its OKS/PCK once predicted."""
    return [{"input": item.image, "person": item.person, "label": item.label,
             "bbox": list(item.bbox) if item.bbox else None, "figure": kind,
             "output": output_name(item, kind, options), "status": "failed", "options": options.signature(kind),
             "keypoints": None, "truth": item.truth.digest() if item.truth else None, "accuracy": None,
             "error": error, "timings": {}} for kind in kinds]


def skip_rows(skipped: Iterable[Skip]) -> list[dict]:
    """One manifest row per image or annotation of the input that is not explained, with why."""
    return [{"input": s.image, "person": s.person, "figure": None, "output": None, "status": NOT_EXPLAINED,
             "reason": s.reason} for s in skipped]


def append_rows(path: Path, rows: list[dict], model: str, weights: str | None, checkpoint: str) -> None:
    """Add rows (with the model that made them) to the manifest, on disk before returning."""
    if not rows:
        return
    with open(path, "a") as fh:
        for r in rows:
            r["model"], r["weights"], r["checkpoint"] = model, weights, checkpoint
            fh.write(json.dumps(r) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_manifest(path: str | Path) -> list[dict]:
    """The rows of a manifest; a line cut short by an interrupted run, or a row not of the manifest's shape
    (edited by hand, another tool's), is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("status") == _OLD_NOT_EXPLAINED:
            row["status"] = NOT_EXPLAINED
        if _well_formed(row):
            rows.append(row)
    return rows


def _well_formed(row) -> bool:
    if isinstance(row, dict) and row.get("status") == NOT_EXPLAINED:     # an input left out: no output
        return all(isinstance(row.get(k), str) for k in ("input", "person", "reason"))
    fields = ("input", "person", "figure", "output")
    if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in fields):
        return False
    output = row["output"]
    # an output is a plain file name inside the output folder
    if not output or output in (".", "..") or "/" in output or "\\" in output or "\0" in output:
        return False
    box = row.get("bbox")
    return box is None or (isinstance(box, list) and len(box) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box))


def latest(rows: Iterable[dict]) -> dict[str, dict]:
    """The last row of each output (a re-run appends; the newest row is the truth); inputs not explained
    (no output) left out."""
    return {r["output"]: r for r in rows if r.get("output") is not None}


def compacted(path: Path, skipped: Iterable[Skip] = ()) -> list[dict]:
    """The latest row per output, then this run's inputs not explained (`skipped`), sorted by input,
    person and output."""
    return sorted([*latest(read_manifest(path)).values(), *skip_rows(skipped)],
                  key=lambda r: (r["input"], r["person"], r["output"] or ""))


def is_complete(row: dict | None, out_dir: Path, item: Item, signature: dict, model: str, checkpoint: str) -> bool:
    """Whether an output needs no work: recorded ok for this very person (image, box, ground truth and the
    label its figure is titled with) with these options,
    by this model with these very weights, and the file on disk is the one the row describes (its size
    and SHA-256). Anything else is redone."""
    if row is None or row.get("status") != "ok":
        return False
    if (row.get("input") != item.image or row.get("person") != item.person
            or row.get("bbox") != (list(item.bbox) if item.bbox else None)
            or row.get("truth") != (item.truth.digest() if item.truth else None)
            or row.get("label", item.label) != item.label):
        return False
    if row.get("options") != signature or row.get("model") != model or row.get("checkpoint") != checkpoint:
        return False
    path = out_dir / row["output"]
    if not isinstance(row.get("bytes"), int) or not isinstance(row.get("sha256"), str):
        return False            # a row from before outputs were fingerprinted: redone once
    try:
        if not stat.S_ISREG(path.lstat().st_mode) or path.lstat().st_size != row["bytes"]:
            return False
        return file_digest(path) == (row["bytes"], row["sha256"])
    except OSError:
        return False


def file_digest(path: str | Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file."""
    import hashlib
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def checkpoint_file(model_name: str, weights: str | None, root: str | None = None) -> Path | None:
    """The checkpoint (file or Hugging Face folder) that `load(model_name, weights)` reads; None for random."""
    if weights == "random":
        return None
    if weights is None:
        from ..zoo import checkpoint_path
        return checkpoint_path(model_name)
    return Path(root or ".", weights)


def checkpoint_sha256(path: Path) -> str:
    """SHA-256 of a checkpoint's bytes (of a folder: its files' names and bytes, in name order)."""
    import hashlib
    if not path.is_dir():
        return file_digest(path)[1]
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(path)}\0{file_digest(p)[1]}\n".encode())
    return h.hexdigest()


def checkpoint_fingerprint(model_name: str, weights: str | None, sha256: str | None = None) -> str:
    """A short hash of the checkpoint's bytes: figures from other weights (a retrained model) are redone.
    `sha256`: the checkpoint's digest when the caller already has it ("random" / "missing" otherwise)."""
    if weights == "random":
        return "random"
    if sha256 is None:
        path = checkpoint_file(model_name, weights)
        if path is None or not path.exists():
            return "missing"
        sha256 = checkpoint_sha256(path)
    return sha256[:16]


def clean_stale_temporaries(out_dir: Path, names: set[str]) -> None:
    """Delete the temporaries of `names` that a writer killed mid-write left behind."""
    # tpexplain.io.atomic_path writes to a hidden temporary beside the output: .<stem>.<random 8><suffix>
    for p in out_dir.glob(".*"):
        m = re.fullmatch(r"\.(.+)\.[A-Za-z0-9_]{8}(\.\w+)", p.name)
        if m and m.group(1) + m.group(2) in names:
            try:
                p.unlink()
            except OSError:
                pass
