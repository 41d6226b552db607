"""`run_batch`: make each figure kind for each person, skipping complete outputs, on every core."""
from __future__ import annotations

import html
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..progress import progress as progress_bar
from .gallery import INDEX, gallery_html
from .inputs import Item
from .manifest import (MANIFEST, append_rows, checkpoint_fingerprint, clean_stale_temporaries, compacted,
                       is_complete, latest, output_name, read_manifest)
from .options import FigureOptions, check_kinds, resolve_layers
from .workers import Task, run_in_process, run_pool

log = logging.getLogger(__name__)


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


def run_batch(items: list[Item], figures: Iterable[str], out_dir: str | Path, model_name: str = "default",
              weights: str | None = None, jobs: int | None = None, options: FigureOptions | None = None,
              force: bool = False, progress: bool = True) -> BatchSummary:
    """Make each figure kind for each person into `out_dir`, skipping outputs that are already complete.

    `jobs` worker processes (default: every core) each load the model once. Writes `manifest.jsonl` and
    `index.html` into `out_dir`. Failures are logged and counted in the summary, never raised. Progress
    (`progress=False`: none) and messages go to the "tpexplain" logger.
    """
    t_start = time.monotonic()
    kinds = check_kinds(figures)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise ValueError(f"output folder is not writable: {out}")
    weights = str(weights) if weights is not None else None
    options = (options or FigureOptions()).for_model(model_name)

    manifest_path = out / MANIFEST
    previous = latest(read_manifest(manifest_path))
    checkpoint = checkpoint_fingerprint(model_name, weights)
    todo: list[Task] = []
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
    clean_stale_temporaries(out, names | {MANIFEST, INDEX})

    summary = BatchSummary(persons=len(items), skipped=skipped, out_dir=str(out), manifest=str(manifest_path),
                           index=str(out / INDEX))
    if skipped:
        log.info(f"{skipped} figure{'s' if skipped != 1 else ''} already complete in {out}: skipped")
    if todo:
        _check_model(model_name, weights, options, kinds)

    with progress_bar(len(todo), desc="batch", unit="persons", enabled=progress and bool(todo)) as bar:
        def record(rows: list[dict]) -> None:
            append_rows(manifest_path, rows, model_name, weights, checkpoint)
            failed = 0
            for r in rows:
                if r["status"] == "ok":
                    summary.made += 1
                else:
                    failed += 1
                    summary.failed += 1
                    summary.failures.append((r["input"], r["person"], r["figure"], r["error"] or "?"))
                    log.warning(f"failed: {r['input']} ({r['person']}, {r['figure']}): {r['error']}")
            bar.update(1, failed=1 if failed else 0)

        jobs = max(1, min(jobs or available_cores(), len(todo) or 1))
        try:
            if todo and jobs == 1:
                run_in_process(todo, options, out, model_name, weights, record)
            elif todo:
                run_pool(todo, options, out, model_name, weights, jobs, record)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            _finish(out, summary, model_name, time.monotonic() - t_start)
    if summary.interrupted:
        log.warning(f"{summary}; run the same command again to resume")
        raise KeyboardInterrupt
    return summary


def available_cores() -> int:
    """The cores this process may use (its CPU affinity, which a container or taskset can narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _check_model(model_name: str, weights: str | None, options: FigureOptions, kinds: list[str]) -> None:
    """Fail once, before any worker starts, for what would otherwise fail for every person."""
    from .. import zoo
    from ..keypoints import keypoint_set
    from ..zoo.checkpoint import CheckpointError
    zoo.entry(model_name)
    if weights is None and zoo.checkpoint_path(model_name) is None:
        raise CheckpointError(zoo.missing_weights_message(model_name))
    if weights not in (None, "random") and not Path(weights).is_file():
        raise ValueError(f"weights file not found: {weights}")
    names = keypoint_set(zoo.keypoint_names(model_name))
    for k in options.keypoints:
        names.index(k)
    if "attention" in kinds and options.layers.strip().lower() not in ("last", "all"):
        import torch

        from ..api import PoseModel
        with torch.device("meta"):      # the architecture only: no memory, no weights
            num_layers = PoseModel(zoo.build(model_name)).num_layers
        resolve_layers(options.layers, num_layers)


def _finish(out: Path, summary: BatchSummary, model_name: str, seconds: float) -> None:
    """Compact the manifest (latest row per output) and write the gallery, both atomically."""
    rows = compacted(out / MANIFEST)
    # rewritten only when changed, so a run that had nothing to do leaves every file untouched
    _write_if_changed(out / MANIFEST, "".join(json.dumps(r) + "\n" for r in rows) if rows else None)
    _write_if_changed(out / INDEX, gallery_html(rows, title=f"tpexplain batch · {model_name}"))
    summary.seconds = seconds


def _write_if_changed(path: Path, text: str | None) -> None:
    from ..io import write_text_atomic
    if text is None or (path.exists() and path.read_text(errors="replace") == text):
        return
    write_text_atomic(path, text)
