"""`batch --scheduler` on a real Dask cluster: a scheduler and two workers as separate processes on 127.0.0.1.

The cluster's figures and manifest rows are those of a local run (timings aside), a run resumes across local and
cluster runs, and a worker killed mid-run costs nothing. Skipped only when Dask distributed is not installed.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from tpexplain.batch import FigureOptions, coco_items, read_manifest, run_batch  # noqa: E402
from tpexplain.io import read_image  # noqa: E402

TPEXPLAIN = str(Path(sys.executable).parent / "tpexplain")
OPTIONS = FigureOptions(keypoints=("l_ankle",), dpi=40)
DASK = [sys.executable, "-m", "dask"]


class Cluster:
    """A `dask scheduler` and `dask worker` processes on 127.0.0.1, each in its own process group."""

    def __init__(self, folder: Path):
        self.folder, self.procs, self.address = folder, [], None

    def start(self, workers: int) -> None:
        file = self.folder / "scheduler.json"
        self._spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", str(file))
        deadline = time.monotonic() + 120
        while not file.exists() or not file.read_text().strip():
            assert time.monotonic() < deadline, (self.folder / "scheduler.log").read_text()
            time.sleep(0.2)
        time.sleep(0.2)     # written whole
        self.address = json.loads(file.read_text())["address"]
        for n in range(workers):
            self._spawn(f"worker{n}", "worker", "--scheduler-file", str(file), "--nthreads", "1", "--no-dashboard",
                        "--host", "127.0.0.1", "--name", f"w{n}", "--local-directory", str(self.folder / f"w{n}"))
        self.wait_for_workers(workers)

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.folder / f"{name}.log", "w")
        self.procs.append(subprocess.Popen(DASK + list(args), stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True, cwd=self.folder))

    def workers(self) -> dict:
        with distributed.Client(self.address, set_as_default=False, timeout=30) as client:
            return client.scheduler_info()["workers"]

    def worker_pids(self) -> list[int]:
        """The worker processes (not their nannies) by asking each one."""
        with distributed.Client(self.address, set_as_default=False, timeout=30) as client:
            return sorted(client.run(os.getpid).values())

    def wait_for_workers(self, n: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while len(self.workers()) < n:
            assert time.monotonic() < deadline, f"{n} workers did not join"
            time.sleep(0.5)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                pass
            try:        # the worker processes a `dask worker` nanny started
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.start(workers=2)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def local_run(coco_dir, small_weights, tmp_path_factory):
    """The CLI's local run (its process pool) that cluster runs are compared with."""
    out = tmp_path_factory.mktemp("local") / "figs"
    run = subprocess.run(_batch_command(coco_dir, small_weights, out), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    return out


def _batch_command(coco_dir, weights, out, *extra):
    return [TPEXPLAIN, "batch", "--coco", str(coco_dir / "test_coco.json"), "--images", str(coco_dir),
            "--out", str(out), "--weights", str(weights), "-k", "l_ankle", "--dpi", "40", "--no-progress", *extra]


def _rows(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "timings"} for r in read_manifest(out / "manifest.jsonl")]


def _same_figures(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.glob("*.png"))
    assert names and names == sorted(p.name for p in b.glob("*.png"))
    for name in names:
        assert np.array_equal(read_image(a / name), read_image(b / name)), name


def _nothing_half_written(out: Path) -> None:
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    for r in read_manifest(out / "manifest.jsonl"):
        if r["status"] == "ok":
            assert (out / r["output"]).stat().st_size == r["bytes"]
            assert read_image(out / r["output"]).size > 0


def test_cluster_run_equals_local_run_and_resumes_across_them(cluster, local_run, coco_dir, small_weights, tmp_path):
    out = tmp_path / "figs"
    run = subprocess.run(_batch_command(coco_dir, small_weights, out, "--scheduler", cluster.address),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    assert f"Dask cluster at {cluster.address}: 2 workers" in run.stderr
    assert "12 figures made, 0 up to date, 0 failed" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in local_run.iterdir())
    assert _rows(out) == _rows(local_run)            # the same rows, the same files (size and SHA-256)
    _same_figures(out, local_run)
    _nothing_half_written(out)
    # resume across: a local run over the cluster's output, and the cluster over the local one, do nothing
    for folder, extra in ((out, ()), (local_run, ("--scheduler", cluster.address))):
        before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
        again = subprocess.run(_batch_command(coco_dir, small_weights, folder, *extra), capture_output=True,
                               text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        assert "0 figures made, 12 up to date, 0 failed" in again.stderr
        assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_a_worker_killed_mid_run_costs_nothing(cluster, local_run, coco_dir, small_weights, tmp_path):
    items = coco_items(coco_dir / "test_coco.json", coco_dir)
    out = tmp_path / "figs"
    killed = []

    def kill_a_worker_once_work_has_started():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(out.glob("*.png")):
            time.sleep(0.05)
        pid = cluster.worker_pids()[0]      # the worker process (its nanny starts a fresh one)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_a_worker_once_work_has_started, daemon=True)
    killer.start()
    summary = run_batch(items, ["attention"], out, weights=str(small_weights), options=OPTIONS, progress=False,
                        scheduler=cluster.address)
    killer.join(30)
    assert killed, "no worker was killed"
    assert (summary.made, summary.failed) == (12, 0), summary.failures
    assert summary.retried and all("left the cluster" in why for _, _, why in summary.retried)
    assert "after a worker died" in str(summary)
    _nothing_half_written(out)
    assert _rows(out) == _rows(local_run)
    _same_figures(out, local_run)
    cluster.wait_for_workers(2)          # the nanny's fresh worker, for the tests after this one


def test_a_scheduler_that_cannot_be_reached_fails_before_anything_is_written(coco_dir, small_weights, tmp_path):
    import dask
    items = coco_items(coco_dir / "test_coco.json", coco_dir)[:1]
    out = tmp_path / "new" / "figs"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(ValueError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
            run_batch(items, ["attention"], out, weights=str(small_weights), options=OPTIONS, progress=False,
                      scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "new").exists()


def test_findings_on_the_cluster_give_the_local_numbers(cluster, coco_dir, small_weights, tmp_path):
    def findings(out, *extra):
        cmd = [TPEXPLAIN, "findings", "--coco", str(coco_dir / "test_coco.json"), "--images", str(coco_dir),
               "--weights", str(small_weights), "--max-people", "2", "--occlusion-people", "1", "--bootstrap", "100",
               "--out", str(out), *extra]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        assert run.returncode == 0, run.stderr
        data = json.loads((out / "findings.json").read_text())
        for key in ("seconds", "command"):      # how long it took and how it was asked for
            data["meta"].pop(key)
        return data, run.stderr

    local, _ = findings(tmp_path / "local")
    remote, log = findings(tmp_path / "cluster", "--scheduler", cluster.address)
    assert f"Dask cluster at {cluster.address}" in log and "findings people: 2/2 people" in log
    assert remote["meta"]["people_analysed"] == 2 and remote["numbers"]["queries"]
    assert remote == local


def test_ctrl_c_on_the_client_keeps_what_is_done_and_a_rerun_does_only_the_rest(cluster, coco_dir, small_weights,
                                                                                  tmp_path):
    out = tmp_path / "figs"
    cmd = _batch_command(coco_dir, small_weights, out, "--scheduler", cluster.address)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("*.png"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    done = {r["output"]: (out / r["output"]).stat().st_mtime_ns
            for r in read_manifest(out / "manifest.jsonl") if r["status"] == "ok"}
    assert 3 <= len(done) < 12, err          # what finished is on record; the queued people were dropped
    _nothing_half_written(out)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    rows = [r for r in read_manifest(out / "manifest.jsonl") if r["status"] == "ok"]
    assert len(rows) == 12
    assert {name: (out / name).stat().st_mtime_ns for name in done} == done     # kept, not redone
    _nothing_half_written(out)
