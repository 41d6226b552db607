"""`run_batch`: make each figure kind for each person, keeping complete outputs, on every core."""
from __future__ import annotations

import dataclasses

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
from .inputs import Item, Skip
from .manifest import (MANIFEST, append_rows, checkpoint_file, checkpoint_fingerprint, checkpoint_sha256,
                       clean_stale_temporaries, compacted, is_complete, latest, output_name, read_manifest)
from .options import FigureOptions, check_kinds, resolve_layers
from .executors import available_cores, executor_for, make_work
from .workers import MAX_RETRIES, Task

log = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    """What a run did. `failures` lists (input, person, figure, error); `retried` lists (input, person, why)
    for each person tried again on a fresh worker after its worker died; `not_explained` lists the input's
    images and annotations left out (`Skip`: image, person, reason), also in the manifest. `up_to_date`
    counts the figures already complete, kept as they were."""

    persons: int = 0
    made: int = 0
    up_to_date: int = 0
    failed: int = 0
    failures: list[tuple[str, str, str, str]] = field(default_factory=list)
    retried: list[tuple[str, str, str]] = field(default_factory=list)
    not_explained: list[Skip] = field(default_factory=list)
    closer: list[tuple[str, str, object]] = field(default_factory=list)   # (input, person, the other annotation)
    seconds: float = 0.0
    out_dir: str = ""
    manifest: str = ""
    index: str = ""             # "" when nothing was written (every figure failed)
    interrupted: bool = False

    @property
    def failed_inputs(self) -> int:
        return len({(f[0], f[1]) for f in self.failures})

    @property
    def skipped(self) -> int:
        """The former name of `up_to_date`."""
        return self.up_to_date

    def __str__(self) -> str:
        text = (f"{_people(self.persons)}: {self.made} figure{'s' if self.made != 1 else ''} made, "
                f"{self.up_to_date} up to date, {self.failed} failed")
        if self.failed:
            text += f" ({_people(self.failed_inputs)})"
        if self.retried:
            people = len({(r[0], r[1]) for r in self.retried})
            text += (f"; {len(self.retried)} retr{'ies' if len(self.retried) != 1 else 'y'} of {_people(people)} "
                     f"after a worker died")
        if self.closer:
            n = len(self.closer)
            text += (f"; {n} prediction{'s' if n != 1 else ''} closer to another annotated person than to "
                     f"{'their' if n != 1 else 'its'} own (closer_to in the manifest)")
        if self.not_explained:
            reasons: dict[str, int] = {}
            for s in self.not_explained:
                reasons[s.reason] = reasons.get(s.reason, 0) + 1
            text += (f"; {len(self.not_explained)} not explained ("
                     + ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items(), key=lambda rn: -rn[1])) + ")")
        text += f" in {self.seconds:.1f}s; " + (f"gallery {self.index}" if self.index else
                                                 f"nothing written to {self.out_dir}")
        return ("interrupted: " if self.interrupted else "") + text

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td>"
                       f"<td>{html.escape(d)}</td></tr>" for a, b, c, d in self.failures[:20])
        failures = (f"<table><tr><th>input</th><th>person</th><th>figure</th><th>error</th></tr>{rows}</table>"
                    if rows else "")
        return f"<p>{html.escape(str(self))}</p>{failures}"


def _people(n: int) -> str:
    return f"{n} {'person' if n == 1 else 'people'}"


def run_batch(items: list[Item], figures: Iterable[str], out_dir: str | Path, model_name: str = "default",
              weights: str | None = None, jobs: int | None = None, options: FigureOptions | None = None,
              force: bool = False, progress: bool = True, max_retries: int = MAX_RETRIES,
              scheduler: str | None = None) -> BatchSummary:
    """Make each figure kind for each person into `out_dir`, keeping outputs that are already complete.

    The model, its weights and the options are checked once, before any worker starts or `out_dir` is
    touched: a run that cannot start raises and leaves `out_dir` as it was. `jobs` worker processes
    (default: every core) each load the model once; a person whose worker dies is tried again on a fresh
    worker (at most `max_retries` times). Writes `manifest.jsonl` and `index.html` into `out_dir`, except
    when every figure tried failed and none was up to date: then `out_dir` is left as it was (a folder this
    run created is removed) and the failures are only reported. Failures are logged and counted in the
    summary, never raised. Progress (`progress=False`: none) and messages go to the "tpexplain" logger.
    `scheduler`: the address of a Dask scheduler, whose cluster's workers run the tasks instead (`jobs` and
    `max_retries` are then the cluster's own; see `executors.DaskCluster`).
    The input's images and annotations that `items` leave out (`Items.skipped`, from `coco_items` or
    `folder_items`) are counted in the summary and listed in the manifest with why.
    """
    t_start = time.monotonic()
    kinds = check_kinds(figures)
    out = Path(out_dir)
    _check_out_dir(out)
    weights = str(weights) if weights is not None else None
    options = dataclasses.replace((options or FigureOptions()).for_model(model_name), replace=force)

    manifest_path = out / MANIFEST
    previous = latest(read_manifest(manifest_path))
    path = checkpoint_file(model_name, weights)
    sha256 = checkpoint_sha256(path) if path is not None and path.exists() else None   # read once per run
    checkpoint = checkpoint_fingerprint(model_name, weights, sha256)
    todo: list[Task] = []
    up_to_date = 0
    names = set()
    for it in items:
        pending = []
        for kind in kinds:
            name = output_name(it, kind, options)
            names.add(name)
            if not force and is_complete(previous.get(name), out, it, options.signature(kind), model_name,
                                         checkpoint):
                up_to_date += 1
            else:
                pending.append(kind)
        if pending:
            todo.append((it, pending))
    # everything that would fail for every person fails here, before the output folder is touched
    model = _check_model(model_name, weights, options, kinds, [it for it, _ in todo]) if todo else None
    # so is a cluster that cannot be reached; one executor runs the tasks here, on local workers or a cluster
    executor = executor_for(make_work(options, out, model_name, weights, sha256), len(todo), jobs, scheduler, model,
                            max_retries) if todo else None
    model = None        # held by the executor if it runs the tasks in this process

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out, names | {MANIFEST, INDEX})
    summary = BatchSummary(persons=len(items), up_to_date=up_to_date, out_dir=str(out),
                           manifest=str(manifest_path), index=str(out / INDEX),
                           not_explained=list(getattr(items, "skipped", [])))
    if up_to_date:
        log.info(f"{up_to_date} figure{'s' if up_to_date != 1 else ''} already complete in {out}: up to date, kept")
    failed_rows: list[dict] = []    # written at the end, and only if the run made or kept something

    with progress_bar(len(todo), desc="batch", unit="people", enabled=progress and bool(todo)) as bar:
        def record(rows: list[dict]) -> None:
            # a made figure is on record at once, so a run killed later still skips it when resumed
            append_rows(manifest_path, [r for r in rows if r["status"] == "ok"], model_name, weights, checkpoint)
            failed = 0
            for r in rows:
                if r["status"] == "ok":
                    summary.made += 1
                else:
                    failed += 1
                    failed_rows.append(r)
                    summary.failed += 1
                    summary.failures.append((r["input"], r["person"], r["figure"], r["error"] or "?"))
                    log.warning(f"failed: {r['input']} ({r['person']}, {r['figure']}): {r['error']}")
            bar.update(1, failed=1 if failed else 0)

        def retry(item: Item, reason: str, attempt: int, allowed: int) -> None:
            summary.retried.append((item.image, item.person, reason))
            log.warning(f"worker {reason} while on {item.image} ({item.person}): trying again on a fresh worker "
                        f"(attempt {attempt} of {allowed})")

        try:
            if executor is not None:
                with executor:
                    executor.run(todo, record, retry)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            clean_stale_temporaries(out, names)     # left by a worker killed mid-write
            if summary.made == 0 and summary.up_to_date == 0 and summary.failed:
                _leave_untouched(out, created, summary)
            else:
                append_rows(manifest_path, failed_rows, model_name, weights, checkpoint)
                _finish(out, summary, model_name, summary.not_explained, items)
            summary.seconds = time.monotonic() - t_start
    if summary.interrupted:
        log.warning(f"{summary}; run the same command again to resume")
        raise KeyboardInterrupt
    return summary


def _check_out_dir(out: Path) -> None:
    """The output folder is a writable folder, or can be made in a writable one (nothing is created here)."""
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"output folder is not a folder: {out}")
        if not os.access(out, os.W_OK | os.X_OK):
            raise ValueError(f"output folder is not writable: {out}")
        return
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create the output folder {out}: {parent} is not a writable folder")


def _check_model(model_name: str, weights: str | None, options: FigureOptions, kinds: list[str], items: list[Item]):
    """Fail once, before any worker starts, for what would otherwise fail for every person: the model is
    loaded here (its checkpoint read and checked as every worker would) and returned."""
    from .. import zoo
    from ..api import load
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
    if options.at == "gt" and not any(it.truth for it in items):
        raise ValueError("--at gt needs ground truth: give the people with --coco ANN")
    unable = [k for k in kinds if options.at != "pred" and not _takes_at(k)]
    if unable:
        raise ValueError(f"--at {options.at} is not available for the {', '.join(unable)} figure: use --at pred")
    bad = next((it for it in items if it.truth and len(it.truth.keypoints) != len(names)), None)
    if bad is not None:
        raise ValueError(f"{bad.image} ({bad.label}): {len(bad.truth.keypoints)} labelled keypoints but "
                         f"{model_name} predicts {len(names)}")
    model = load(model_name, weights)
    if "attention" in kinds:
        resolve_layers(options.layers, model.num_layers)
    return model


def _takes_at(kind: str) -> bool:
    """Whether the code drawing `kind` can query its keypoint at the ground truth (an `at` argument)."""
    import inspect
    if kind == "attention":
        from ..explanation import Explanation
        return all("at" in inspect.signature(f).parameters for f in (Explanation.grid, Explanation.attention_map))
    if kind == "layers":
        from ..analysis.depth import layer_study as draw
    else:
        from ..analysis.occlusion import occlusion_study as draw
        return {"at", "ground_truth"} <= set(inspect.signature(draw).parameters)
    return "at" in inspect.signature(draw).parameters


def _leave_untouched(out: Path, created: bool, summary: BatchSummary) -> None:
    """Every figure tried failed and none was up to date: no manifest or gallery of failures is written
    (a previous manifest stays as it was), and a folder this run created is removed again."""
    summary.index = ""
    if created:
        try:
            out.rmdir()
        except OSError:     # not empty: something else was put there meanwhile
            pass


def _finish(out: Path, summary: BatchSummary, model_name: str, not_explained: list[Skip],
            items: list[Item]) -> None:
    """Compact the manifest (latest row per output, then the inputs not explained) and write the gallery,
    both atomically; count this run's people whose prediction fits another annotated person better."""
    rows = compacted(out / MANIFEST, not_explained)
    people = {(it.image, it.person) for it in items}
    summary.closer = sorted({(r["input"], r["person"], r["accuracy"]["closer_to"]) for r in rows
                             if (r["input"], r["person"]) in people and isinstance(r.get("accuracy"), dict)
                             and r["accuracy"].get("closer_to") is not None}, key=str)
    # rewritten only when changed, so a run that had nothing to do leaves every file untouched
    _write_if_changed(out / MANIFEST, "".join(json.dumps(r) + "\n" for r in rows) if rows else None)
    _write_if_changed(out / INDEX, gallery_html(rows, title=f"tpexplain batch · {model_name}"))


def _write_if_changed(path: Path, text: str | None) -> None:
    from ..io import write_text_atomic
    if text is None or (path.exists() and path.read_text(errors="replace") == text):
        return
    write_text_atomic(path, text)
