"""Where a batch's person tasks run, behind one interface: this process, a local process pool, or a Dask cluster;
and `PeopleOnCluster`, the findings' per-person measurements on a Dask cluster."""
from __future__ import annotations

import logging
import os
import queue
import time
import uuid
from pathlib import Path

from ..progress import one_line
from ..progress import progress as progress_bar
from .manifest import person_rows
from .options import FigureOptions
from .workers import (MAX_RETRIES, Record, Retry, Task, Work, cluster_task, measure_task, run_in_process,
                      run_pool)

log = logging.getLogger(__name__)


class Executor:
    """Runs a batch's person tasks; the runner's one way to schedule them, whatever runs them.

    `run(tasks, record, on_retry)` calls `record(rows)` once per task as it completes (a task that could not
    be done comes back as failed rows, never as an exception) and `on_retry(item, why, attempt, allowed)`
    when a task is run again because its worker died. On an interrupt, the tasks already running finish
    their writes and are recorded, the others are dropped, and KeyboardInterrupt is raised. A context
    manager: leaving it stops the pool or closes the connection.
    """

    def __init__(self, work: Work):
        self.work = work

    def run(self, tasks: list[Task], record: Record, on_retry: Retry) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcess(Executor):
    """Every task one after the other in this process (one job: no worker to start)."""

    def __init__(self, work: Work, model=None):
        super().__init__(work)
        self.model = model      # already loaded and checked by the runner, or None to load it here

    def run(self, tasks: list[Task], record: Record, on_retry: Retry) -> None:
        w = self.work
        run_in_process(tasks, w.options, Path(w.out), w.model_name, w.weights, record, self.model, w.sha256)


class ProcessPool(Executor):
    """`jobs` spawned worker processes on this machine, each loading the model once; a task whose worker
    died goes to a fresh worker, at most `max_retries` times (see `workers.run_pool`)."""

    def __init__(self, work: Work, jobs: int, max_retries: int = MAX_RETRIES):
        super().__init__(work)
        self.jobs, self.max_retries = jobs, max_retries

    def run(self, tasks: list[Task], record: Record, on_retry: Retry) -> None:
        w = self.work
        run_pool(tasks, w.options, Path(w.out), w.model_name, w.weights, self.jobs, record, on_retry,
                 self.max_retries, w.sha256)


class DaskCluster(Executor):
    """The tasks on the Dask cluster whose scheduler is at `address` (anything `distributed.Client` takes).

    Each worker process loads the model once, from the checkpoint path it sees, and only if its bytes have
    the SHA-256 the client named; the workers write the figures into the output folder (a filesystem shared
    with the client, at the same path) and send back the manifest rows, which only this client writes.
    Dask runs a task whose worker died again on another worker (its own retries: the scheduler's
    `distributed.scheduler.allowed-failures`, default 3) and then reports it failed. A worker runs one task
    at a time with one torch thread, as a local pool worker does: start workers with `--nthreads 1` and as
    many processes (`--nworkers`) as cores.
    """

    def __init__(self, work: Work, address: str):
        super().__init__(work)
        self.address = address
        self.client = connect(address)


    def run(self, tasks: list[Task], record: Record, on_retry: Retry) -> None:
        from distributed import as_completed
        client = self.client
        run_id = uuid.uuid4().hex[:12]
        keys = [f"tpexplain-batch-{run_id}-{i}" for i in range(len(tasks))]
        index = {k: i for i, k in enumerate(keys)}
        allowed = self._allowed_failures() + 1
        attempts = [1] * len(tasks)
        deaths: queue.SimpleQueue = queue.SimpleQueue()
        # the scheduler tells every subscriber which tasks a worker held when it died; Dask reruns those
        client.subscribe_topic("all", deaths.put)
        futures = client.map(cluster_task, [t[0] for t in tasks], [t[1] for t in tasks], work=self.work,
                             key=keys, pure=False)
        pending = dict(zip(keys, futures))
        done_queue = as_completed(futures, loop=client.loop)
        try:
            while pending:
                self._note_deaths(deaths, index, pending, attempts, allowed, tasks, on_retry)
                done = done_queue.next_batch(block=False)
                if not done:
                    time.sleep(0.05)
                    continue
                for f in done:
                    record(self._rows(f, tasks[index[f.key]], allowed))
                    del pending[f.key]
                    f.release()
        except KeyboardInterrupt:
            # the tasks the workers hold finish their writes and are recorded; the queued ones are dropped
            held = {k for ks in client.processing().values() for k in ks}
            client.cancel([f for k, f in pending.items() if k not in held])
            for f in [f for k, f in pending.items() if k in held]:
                try:
                    f.result()      # a second Ctrl-C stops waiting
                except Exception:
                    pass
                if f.status == "finished":
                    record(self._rows(f, tasks[index[f.key]], allowed))
            raise
        finally:
            client.unsubscribe_topic("all")

    def _note_deaths(self, deaths: queue.SimpleQueue, index: dict, pending: dict, attempts: list[int],
                     allowed: int, tasks: list[Task], on_retry: Retry) -> None:
        while not deaths.empty():
            _, msg = deaths.get()
            if not isinstance(msg, dict) or msg.get("action") != "remove-worker" or msg.get("expected"):
                continue
            for key in msg.get("processing-tasks", ()):
                if key in pending:
                    i = index[key]
                    attempts[i] += 1
                    if attempts[i] <= allowed:
                        on_retry(tasks[i][0], f"{msg.get('worker', '?')} left the cluster", attempts[i], allowed)

    def _rows(self, future, task: Task, allowed: int) -> list[dict]:
        """The task's rows, or failed rows saying why the cluster could not make them."""
        from distributed import KilledWorker
        item, kinds = task
        try:
            return future.result()
        except KilledWorker as exc:
            error = f"worker died on this person {allowed} times (last: {exc.last_worker.address})"
        except Exception as exc:    # the task itself cannot fail; this is the cluster (import, pickling)
            error = f"the cluster could not run this person: {one_line(exc)}"
        return person_rows(item, kinds, self.work.options, error=error)

    def _allowed_failures(self) -> int:
        try:
            return int(self.client.run_on_scheduler(_allowed_failures))
        except Exception:       # a scheduler that runs no client code: assume the default
            import dask
            return int(dask.config.get("distributed.scheduler.allowed-failures", 3))

    def close(self) -> None:
        self.client.close()


def _allowed_failures(dask_scheduler=None) -> int:
    return dask_scheduler.allowed_failures


def connect(address: str, describe: bool = True):
    """A `distributed.Client` of the scheduler at `address`, or a one-line ValueError; how long it tries is
    Dask's `distributed.comm.timeouts.connect` (30 s unless configured)."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask distributed: pip install 'tpexplain[dask]'") from None
    try:
        client = Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {address}: {one_line(exc)}") from None
    if describe:
        workers = client.scheduler_info().get("workers", {})
        if workers:
            threads = sum(w.get("nthreads", 0) for w in workers.values())
            log.info(f"Dask cluster at {address}: {len(workers)} worker{'s' if len(workers) != 1 else ''}, "
                     f"{threads} thread{'s' if threads != 1 else ''}")
        else:
            log.warning(f"the Dask cluster at {address} has no workers yet: the tasks wait until some join")
    return client


class PeopleOnCluster:
    """`findings(..., map_people=PeopleOnCluster(address))`: the per-person measurements (`measure_person`) as
    tasks on the Dask cluster at `address`; the client computes the claims and writes the report.

    Each call measures the (person, options) tasks with one model and returns the records in task order. The
    findings measure the trained model and two baselines that exist only in this process, so the model is
    sent, pickled, once per worker per call (named by the SHA-256 of its bytes) rather than read from a
    file. The workers compute with this process's torch thread count: on the same kind of machine the
    numbers are those of a local run. A person whose workers kept dying is recorded as skipped, with why.
    """

    STAGES = ("people", "random baseline", "peaked baseline")     # the order `findings` calls it in

    def __init__(self, address: str):
        self.address, self.calls = address, 0
        connect(address).close()        # an unreachable cluster fails now, before any measuring

    def __call__(self, pose_model, tasks: list) -> list[dict]:
        import hashlib
        import pickle

        import torch
        from distributed import as_completed
        stage = self.STAGES[min(self.calls, len(self.STAGES) - 1)]
        self.calls += 1
        payload = pickle.dumps(pose_model)
        sha256 = hashlib.sha256(payload).hexdigest()
        records: list = [None] * len(tasks)
        keys = [f"tpexplain-findings-{uuid.uuid4().hex[:12]}-{i}" for i in range(len(tasks))]
        index = {k: i for i, k in enumerate(keys)}
        client = connect(self.address, describe=False)
        try:
            with progress_bar(len(tasks), f"findings {stage}", "people") as bar:
                data = client.scatter(payload, broadcast=True, hash=False)
                futures = client.map(measure_task, [p for p, _ in tasks], [o for _, o in tasks], payload=data,
                                     sha256=sha256, threads=torch.get_num_threads(), key=keys, pure=False)
                for f in as_completed(futures, loop=client.loop):
                    i = index[f.key]
                    try:
                        records[i] = f.result()
                    except Exception as exc:     # measure_person itself never raises: the cluster failed
                        records[i] = _not_measured(*tasks[i], f"on the cluster: {one_line(exc)}")
                    bar.update(1, failed=int("skipped" in records[i]))
                    f.release()
        finally:
            client.close()
        return records


def _not_measured(person, options, why: str) -> dict:
    """The record `measure_person` gives a person it cannot measure."""
    return {"person": {"image": str(person.image), "image_id": person.image_id,
                       "annotation_id": person.annotation_id, "bbox": [float(v) for v in person.bbox],
                       "box_source": person.box_source}, "index": options.index, "skipped": why}


def available_cores() -> int:
    """The cores this process may use (its CPU affinity, which a container or taskset can narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def make_work(options: FigureOptions, out: str | Path, model_name: str, weights: str | None,
              sha256: str | None) -> Work:
    """What every task of a run shares, with the checkpoint named by the SHA-256 of its bytes."""
    from .. import __version__
    return Work(options, str(Path(out).absolute()), model_name, weights, sha256, os.getcwd(), __version__)


def executor_for(work: Work, tasks: int, jobs: int | None = None, scheduler: str | None = None, model=None,
                 max_retries: int = MAX_RETRIES) -> Executor:
    """The executor for a run of `tasks` tasks: the Dask cluster at `scheduler` (connected here, so a cluster
    that cannot be reached fails before anything is written); else `jobs` local worker processes (default:
    every core; at most twice the cores), or this process when that is one job (using `model`, if loaded)."""
    if scheduler:
        if jobs:
            log.warning("--jobs is ignored with --scheduler: the cluster's workers run the tasks")
        return DaskCluster(work, scheduler)
    # one torch thread per worker: more workers than cores only add model copies in memory
    cap = 2 * available_cores()
    if jobs and jobs > cap:
        log.warning(f"{jobs} jobs is more than twice the {cap // 2} cores this process may use: "
                    f"at most {cap} workers")
    jobs = max(1, min(jobs or available_cores(), cap, tasks or 1))
    if jobs == 1:
        return InProcess(work, model)
    return ProcessPool(work, jobs, max_retries)
