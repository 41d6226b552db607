"""The batch's workers: a process pool that loads the model once per worker and makes each person's figures."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import signal
import time
from collections.abc import Callable
from pathlib import Path

from .inputs import Item
from .manifest import person_rows
from .options import FIGURE_KINDS, FigureOptions, resolve_layers

Task = tuple[Item, list[str]]           # a person and the figure kinds still to make for it
Record = Callable[[list[dict]], None]   # takes one person's manifest rows as each person finishes

_WORKER: dict = {}   # this process's model (or why it could not be loaded)


def init_worker(model_name: str, weights: str | None, spawned: bool) -> None:
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


def process(item: Item, kinds: list[str], options: FigureOptions, out_dir: str) -> list[dict]:
    """Explain one person and draw each figure kind; every failure becomes a row, never an exception."""
    t0 = time.perf_counter()
    rows = person_rows(item, kinds, options)
    try:
        if "error" in _WORKER:
            raise RuntimeError(_WORKER["error"])
        pm = _WORKER["model"]
        pm.decode = options.decode      # also what the occlusion study's own passes use
        from ..io import parse_bbox, read_image
        image = read_image(item.image)
        box = parse_bbox(",".join(map(str, item.bbox)), image.shape) if item.bbox else None
        t_read = time.perf_counter() - t0
        ex = None
        if any(k in ("attention", "layers") for k in kinds):
            t = time.perf_counter()
            ex = pm.explain(image, bbox=box, flip=options.flip, query=options.query)
            t_explain = time.perf_counter() - t
        else:
            t_explain = 0.0
    except Exception as exc:
        for r in rows:
            r["error"] = one_line(exc)
            r["timings"] = {"total": round(time.perf_counter() - t0, 3)}
        return rows
    keypoints = keypoint_record(ex) if ex is not None else None
    for kind, row in zip(kinds, rows):
        t = time.perf_counter()
        try:
            path = Path(out_dir) / row["output"]
            row["results"], shown = make_figure(kind, pm, ex, image, box, options, path)
            row["keypoints"] = keypoints or keypoint_record(shown)
            row["status"] = "ok"
        except Exception as exc:
            row["error"] = one_line(exc)
        row["timings"] = {"read": round(t_read, 3), "explain": round(t_explain, 3),
                          "figure": round(time.perf_counter() - t, 3)}
    return rows


def make_figure(kind: str, pm, ex, image, box, options: FigureOptions, path: Path) -> tuple[dict | None, object]:
    """Draw and atomically save one figure: (the numbers behind it for the manifest, the clean Explanation)."""
    # save_figure writes through tpexplain.io.atomic_path: a figure on disk is always whole
    from ..figures import save_figure
    if kind == "attention":
        layers = resolve_layers(options.layers, ex.num_layers)
        if len(options.keypoints) == 1 and len(layers) == 1:
            fig = ex.attention_map(options.mode, options.keypoints[0], layers[0], options.head).figure(options.where)
        else:
            fig = ex.grid(list(options.keypoints), layers, options.mode, options.head, options.where)
        save_figure(fig, path, dpi=options.dpi)
        return None, ex
    if kind == "layers":
        from ..analysis.depth import layer_study
        study = layer_study(ex, list(options.keypoints), head=options.head)
        save_figure(study.figure(options.where), path, dpi=options.dpi)
        return {"metrics": rounded(study.metrics)}, ex
    if kind == "occlusion":
        from ..analysis.occlusion import occlusion_study
        study = occlusion_study(pm, image, options.occlusion_keypoint, bbox=box, region=options.region,
                                part=options.part, fill=options.fill, flip=options.flip)
        save_figure(study.figure(), path, dpi=options.dpi)
        return rounded(study.summary()), study.before
    raise ValueError(f"unknown figure kind '{kind}'; use {', '.join(FIGURE_KINDS)}")


def rounded(value):
    """JSON-ready numbers, 4 significant digits: the manifest is for reading, not for re-computing."""
    if isinstance(value, dict):
        return {str(k): rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


def keypoint_record(ex) -> dict:
    """{name: [x, y, score]} of an Explanation's predicted keypoints, rounded for the manifest."""
    return {name: [round(float(x), 1), round(float(y), 1), round(float(s), 3)]
            for name, (x, y, s) in zip(ex.keypoint_names, ex.keypoints)}


def one_line(exc: BaseException) -> str:
    """An exception's first line (its type when it has no message)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_in_process(tasks: list[Task], options: FigureOptions, out: Path, model_name: str, weights: str | None,
                   record: Record) -> None:
    """Every task one after the other in this process (one job: no pool to start)."""
    try:
        init_worker(model_name, weights, spawned=False)
        for item, kinds in tasks:
            record(process(item, kinds, options, str(out)))
    finally:
        _WORKER.clear()


def run_pool(tasks: list[Task], options: FigureOptions, out: Path, model_name: str, weights: str | None,
             jobs: int, record: Record) -> None:
    """The tasks on `jobs` worker processes, each recorded as it finishes; on an interrupt, the running
    tasks finish their writes and are recorded, the queued ones are dropped, and KeyboardInterrupt is raised."""
    # spawn: a fresh interpreter per worker, never a fork of a parent holding torch threads or locks
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=init_worker,
                                  initargs=(model_name, weights, True))
    futures = {pool.submit(process, item, kinds, options, str(out)): (item, kinds) for item, kinds in tasks}
    recorded = set()
    try:
        for fut in cf.as_completed(futures):
            recorded.add(fut)
            record(_result(fut, *futures[fut], options))
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        for fut, (item, kinds) in futures.items():
            if fut.done() and not fut.cancelled() and fut not in recorded:
                record(_result(fut, item, kinds, options))
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _result(fut: cf.Future, item: Item, kinds: list[str], options: FigureOptions) -> list[dict]:
    try:
        return fut.result()
    except Exception as exc:  # a worker died (e.g. killed for memory): this person fails, the run goes on
        return person_rows(item, kinds, options, error=f"worker failed: {one_line(exc)}")
