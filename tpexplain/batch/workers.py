"""The batch's workers: a process pool that loads the model once per worker and makes each person's figures;
`cluster_task`, the same work as a task on a Dask cluster's worker."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from pathlib import Path

from ..progress import one_line
from .inputs import Item
from .manifest import checkpoint_file, checkpoint_sha256, file_digest, person_rows
from .options import FIGURE_KINDS, FigureOptions, resolve_layers

Task = tuple[Item, list[str]]           # a person and the figure kinds still to make for it
Record = Callable[[list[dict]], None]   # takes one person's manifest rows as each person finishes
Retry = Callable[[Item, str, int, int], None]   # (person, how its worker died, next attempt, attempts allowed)
MAX_RETRIES = 2      # a person whose worker died is tried again on a fresh worker at most this often

_WORKER: dict = {}   # this process's model (or why it could not be loaded), and the key it was loaded for
_LOCK = threading.Lock()   # a cluster worker with several threads: one task at a time uses the model


@dataclass(frozen=True)
class Work:
    """What every task of a run shares (sent with each task; small). Paths are absolute or relative to
    `root`, the client's working folder; `sha256` names the checkpoint's bytes (None: random weights)."""

    options: FigureOptions
    out: str
    model_name: str
    weights: str | None
    sha256: str | None
    root: str
    version: str


def load_model(model_name: str, weights: str | None, sha256: str | None = None, root: str | None = None):
    """The model with its weights; with `sha256`, only if the checkpoint read here has exactly those bytes
    (before and after loading), so a worker never uses another file than the one the client named."""
    from ..api import load
    path = checkpoint_file(model_name, weights, root)
    if sha256 is not None and path is not None:
        _check_sha256(path, sha256)
    model = load(model_name, str(path) if weights not in (None, "random") else weights)
    if sha256 is not None and path is not None:
        _check_sha256(path, sha256)     # not replaced while it was being read
    return model


def _check_sha256(path: Path, sha256: str) -> None:
    try:
        here = checkpoint_sha256(path)
    except OSError as exc:
        raise RuntimeError(f"cannot read the checkpoint {path}: {one_line(exc)}") from None
    if here != sha256:
        raise RuntimeError(f"the checkpoint {path} here is not the one the client named "
                           f"(sha256 {here[:16]}…, expected {sha256[:16]}…)")


def init_worker(model_name: str, weights: str | None, spawned: bool, sha256: str | None = None) -> None:
    """Runs once in each worker process (one torch thread, headless drawing), or in-process for one job."""
    if spawned:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides what an interrupt stops
        _headless(1)
    _WORKER.clear()
    try:
        _WORKER["model"] = load_model(model_name, weights, sha256)
    except Exception as exc:  # reported per task, so the parent sees a reason, not a broken pool
        _WORKER["error"] = f"cannot load model '{model_name}': {exc}"


def _headless(threads: int) -> None:
    import cv2
    import matplotlib
    import torch
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    cv2.setNumThreads(1)
    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")


def cluster_task(item: Item, kinds: list[str], work: Work) -> list[dict]:
    """One person's figures on a Dask worker: the model is loaded once per worker process (kept for the
    next task of the same checkpoint, by its SHA-256); tasks on one worker use it one at a time."""
    with _LOCK:
        # one torch thread, as a local pool worker: the same numbers and pixels as a local run
        _headless(1)
        key = (work.model_name, work.weights, work.sha256, work.root)
        if _WORKER.get("key") != key:
            from .. import __version__
            _WORKER.clear()
            try:
                if work.version != __version__:
                    raise RuntimeError(f"the worker has tpexplain {__version__}, the client {work.version}")
                _WORKER["model"] = load_model(work.model_name, work.weights, work.sha256, work.root)
            except Exception as exc:    # every task of this worker reports it, as in the local pool
                _WORKER["error"] = f"cannot load model '{work.model_name}': {exc}"
            _WORKER["key"] = key
        _test_hook(item)
        return process(item, kinds, work.options, work.out, work.root)


_SENT: dict = {}     # findings on a cluster: the model the client sent, by the SHA-256 of its pickled bytes


def measure_task(person, options, payload: bytes, sha256: str, threads: int) -> dict:
    """One person's findings measurements (`measure_person`) on a Dask worker, with the model the client sent:
    `payload` is the pickled PoseModel (the trained model or a baseline that exists only in the client's
    memory), sent once per worker and unpickled once per worker process. `threads`: the client's torch
    threads, so that the numbers are the ones a local run computes."""
    import hashlib
    import pickle
    from ..analysis.findings import measure_person
    with _LOCK:
        _headless(threads)
        model = _SENT.get(sha256)
        if model is None:
            if hashlib.sha256(payload).hexdigest() != sha256:
                raise RuntimeError("the model bytes this worker received are not the ones the client sent")
            _SENT.clear()       # one model at a time: the report measures the model, then each baseline
            model = _SENT[sha256] = pickle.loads(payload)
        return measure_person(model, person, options)


def process(item: Item, kinds: list[str], options: FigureOptions, out_dir: str, root: str | None = None
            ) -> list[dict]:
    """Explain one person and draw each figure kind; every failure becomes a row, never an exception.
    A relative image path is read from `root` (the client's working folder; default: this process's)."""
    t0 = time.perf_counter()
    rows = person_rows(item, kinds, options)
    try:
        if "error" in _WORKER:
            raise RuntimeError(_WORKER["error"])
        pm = _WORKER["model"]
        pm.decode = options.decode      # also what the occlusion study's own passes use
        from ..io import parse_bbox, read_image
        image = read_image(Path(root or ".", item.image))
        box = parse_bbox(",".join(map(str, item.bbox)), image.shape) if item.bbox else None
        t_read = time.perf_counter() - t0
        ex = None
        if any(k in ("attention", "layers") for k in kinds):
            t = time.perf_counter()
            ex = pm.explain(image, bbox=box, flip=options.flip, query=options.query)
            item.dress(ex, pm.name)         # titles name image, person, model; the ground truth drawn
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
            row["results"], shown = make_figure(kind, pm, ex, image, box, options, path, item)
            row["keypoints"] = keypoints or keypoint_record(shown)
            row["accuracy"] = item.accuracy(shown.keypoints)    # OKS, PCK against the ground truth
            row["bytes"], row["sha256"] = file_digest(path)     # what a resumed run checks the file against
            row["status"] = "ok"
        except Exception as exc:
            row["error"] = one_line(exc)
        row["timings"] = {"read": round(t_read, 3), "explain": round(t_explain, 3),
                          "figure": round(time.perf_counter() - t, 3)}
    return rows


def make_figure(kind: str, pm, ex, image, box, options: FigureOptions, path: Path, item: Item | None = None
                ) -> tuple[dict | None, object]:
    """Draw and atomically save one figure: (the numbers behind it for the manifest, the clean Explanation)."""
    # save_figure writes through tpexplain.io.atomic_path: a figure on disk is always whole
    from ..figures import save_figure
    if kind == "attention":
        layers = resolve_layers(options.layers, ex.num_layers)
        if len(options.keypoints) == 1 and len(layers) == 1:
            fig = ex.attention_map(options.mode, options.keypoints[0], layers[0], options.head,
                                   at=options.at).figure(options.where)
        else:
            fig = ex.grid(list(options.keypoints), layers, options.mode, options.head, options.where,
                          **_at(options))
        save_figure(fig, path, dpi=options.dpi, force=options.replace)
        return None, ex
    if kind == "layers":
        from ..analysis.depth import layer_study
        study = layer_study(ex, list(options.keypoints), head=options.head, **_at(options))
        save_figure(study.figure(options.where), path, dpi=options.dpi, force=options.replace)
        return {"metrics": rounded(study.metrics)}, ex
    if kind == "occlusion":
        from ..analysis.occlusion import occlusion_study
        study = occlusion_study(pm, image, options.occlusion_keypoint, bbox=box, region=options.region,
                                part=options.part, fill=options.fill, flip=options.flip, **_at(options, item))
        if item is not None:
            item.dress(study.before, pm.name)
            item.dress(study.after, pm.name)
        save_figure(study.figure(), path, dpi=options.dpi, force=options.replace)
        return rounded(study.summary()), study.before
    raise ValueError(f"unknown figure kind '{kind}'; use {', '.join(FIGURE_KINDS)}")


def _at(options: FigureOptions, item: Item | None = None) -> dict:
    # only a non-default `at` is passed on (the batch checks first that the figure's code takes it), with the
    # person's ground truth for code that takes it as an argument (occlusion_study)
    if options.at == "pred":
        return {}
    return {"at": options.at} if item is None else {"at": options.at, "ground_truth": item.ground_truth}


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


def run_in_process(tasks: list[Task], options: FigureOptions, out: Path, model_name: str, weights: str | None,
                   record: Record, model=None, sha256: str | None = None) -> None:
    """Every task one after the other in this process (one job: no pool to start). `model`: an already
    loaded PoseModel to use instead of loading one."""
    try:
        if model is None:
            init_worker(model_name, weights, spawned=False, sha256=sha256)
        else:
            _WORKER.clear()
            _WORKER["model"] = model
        for item, kinds in tasks:
            record(process(item, kinds, options, str(out)))
    finally:
        _WORKER.clear()


def worker_main(conn, model_name: str, weights: str | None, options: FigureOptions, out: str,
                sha256: str | None = None) -> None:
    """A pool worker: load the model once, then make each task sent over `conn` and send back its rows."""
    init_worker(model_name, weights, spawned=True, sha256=sha256)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):       # the parent is gone
            return
        if task is None:
            return
        item, kinds = task
        _test_hook(item)
        rows = process(item, kinds, options, out)
        try:
            conn.send(rows)
        except OSError:                   # the parent is gone
            return


def _test_hook(item: Item) -> None:
    """For the tests of worker deaths: TPEXPLAIN_TEST_KILL_WORKER='{"marker": DIR, "kill": {KEY: N}}' makes
    the worker that starts the person whose key is KEY kill itself with SIGKILL, the first N times (counted in
    a file in DIR, across worker processes): a real process death, as `kill -9` or the kernel's OOM killer."""
    spec = os.environ.get("TPEXPLAIN_TEST_KILL_WORKER")
    if not spec:
        return
    spec = json.loads(spec)
    times = int(spec["kill"].get(item.key, 0))
    marker = Path(spec["marker"]) / f"{item.key}.killed"
    if times and (len(marker.read_text().splitlines()) if marker.exists() else 0) < times:
        with open(marker, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


class _Worker:
    """One worker process, its pipe, and the task it holds (an index into the task list, or None)."""

    def __init__(self, ctx, number: int, args: tuple):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, *args), name=f"tpexplain-batch-{number}",
                                daemon=True)
        self.proc.start()
        child.close()           # only the worker holds its end: its death reads as end-of-file here
        self.task: int | None = None

    def send(self, index: int, task: Task) -> None:
        self.task = index
        try:
            self.conn.send(task)
        except OSError:         # died before it could take the task: its sentinel reports the death
            pass

    def receive(self) -> list[dict] | None:
        """The rows of the task it holds, or None when the process died without sending them."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def death(self) -> str:
        """How the process ended ("killed by SIGKILL", "exit code 1")."""
        self.proc.join(5)
        code = self.proc.exitcode
        if code is None:
            return "stopped responding"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


def run_pool(tasks: list[Task], options: FigureOptions, out: Path, model_name: str, weights: str | None,
             jobs: int, record: Record, on_retry: Retry | None = None, max_retries: int = MAX_RETRIES,
             sha256: str | None = None) -> None:
    """The tasks on `jobs` worker processes, each recorded as it finishes.

    A worker that dies (killed, out of memory, crashed) costs only the task it held: that task goes back to
    the front of the queue for a fresh worker (`on_retry` is told), at most `max_retries` times before it is
    recorded as failed; the other workers go on. After a run of deaths with no task finished in between
    (the workers cannot live at all), the remaining tasks fail instead of starting workers without end.
    On an interrupt, the running tasks finish their writes and are recorded, the queued ones are dropped,
    and KeyboardInterrupt is raised.
    """
    # spawn: a fresh interpreter per worker, never a fork of a parent holding torch threads or locks
    ctx = multiprocessing.get_context("spawn")
    args = (model_name, weights, options, str(out), sha256)
    queue = deque(range(len(tasks)))
    attempts = [0] * len(tasks)
    workers: list[_Worker] = []
    started = 0
    deaths_in_a_row, last_death = 0, ""
    give_up_after = 2 * jobs + max_retries + 1

    def start_and_dispatch() -> None:
        nonlocal started
        started += 1
        w = _Worker(ctx, started, args)
        workers.append(w)
        dispatch(w)

    def dispatch(w: _Worker) -> None:
        if queue:
            i = queue.popleft()
            attempts[i] += 1
            w.send(i, tasks[i])

    def fail(i: int, error: str) -> None:
        item, kinds = tasks[i]
        record(person_rows(item, kinds, options, error=error))

    try:
        for _ in range(min(jobs, len(tasks))):
            start_and_dispatch()
        while True:
            busy = [w for w in workers if w.task is not None]
            if not busy:
                break
            ready = set(mp_connection.wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            for w in busy:
                if w.conn not in ready and w.proc.sentinel not in ready:
                    continue
                i, rows = w.task, w.receive()
                w.task = None
                if rows is not None:
                    deaths_in_a_row = 0
                    record(rows)
                    dispatch(w)
                    continue
                # the worker died holding task i
                workers.remove(w)
                reason = w.death()
                w.stop()
                deaths_in_a_row += 1
                last_death = reason
                item = tasks[i][0]
                if attempts[i] <= max_retries:
                    queue.appendleft(i)
                    if on_retry is not None:
                        on_retry(item, reason, attempts[i] + 1, max_retries + 1)
                else:
                    fail(i, f"worker died on this person {attempts[i]} times (last: {reason})")
                if deaths_in_a_row >= give_up_after:
                    while queue:
                        fail(queue.popleft(), f"not made: {deaths_in_a_row} workers died in a row "
                                              f"(last: {last_death})")
                elif queue:
                    idle = [x for x in workers if x.task is None]
                    if idle:
                        dispatch(idle[0])
                    else:
                        start_and_dispatch()
    except KeyboardInterrupt:
        queue.clear()
        for w in workers:        # the running tasks finish their writes and are recorded
            if w.task is not None:
                mp_connection.wait([w.conn, w.proc.sentinel])
                rows = w.receive()
                w.task = None
                if rows is not None:
                    record(rows)
        raise
    finally:
        for w in workers:
            w.stop()

