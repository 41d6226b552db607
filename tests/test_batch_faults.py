"""`tpexplain batch` under faults: a worker killed mid-run (kill -9, for real), a run that cannot start, a run
in which every figure fails. Nothing is lost, nothing half-written is left, a good manifest is never replaced."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tpexplain.batch import FigureOptions, coco_items, read_manifest, run_batch
from tpexplain.cli import main

TPEXPLAIN = str(Path(sys.executable).parent / "tpexplain")
OPTIONS = FigureOptions(keypoints=("l_ankle",), dpi=40)



def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_killed_worker_costs_nothing_and_repeated_deaths_fail_only_that_person(coco_dir, small_weights, tmp_path):
    items = coco_items(coco_dir / "test_coco.json", coco_dir)
    once, always = items[2].key, items[7].key
    out, marks = tmp_path / "figs", tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, TPEXPLAIN_TEST_KILL_WORKER=json.dumps({"marker": str(marks),
                                                                  "kill": {once: 1, always: 99}}))
    cmd = [TPEXPLAIN, "batch", "--coco", str(coco_dir / "test_coco.json"), "--images", str(coco_dir),
           "--out", str(out), "--weights", str(small_weights), "-k", "l_ankle", "--dpi", "40", "--jobs", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    # the worker process really died by SIGKILL: once on the first person, three times on the second
    assert len((marks / f"{once}.killed").read_text().split()) == 1
    assert len((marks / f"{always}.killed").read_text().split()) == 3
    assert run.returncode == 1, run.stderr               # one person could not be made
    assert "11 figures made, 0 up to date, 1 failed (1 person); 3 retries of 2 people after a " \
           "worker died" in run.stderr
    assert "worker killed by SIGKILL while on" in run.stderr and "attempt 2 of 3" in run.stderr
    rows = {r["person"]: r for r in read_manifest(out / "manifest.jsonl")}
    assert len(rows) == 14 and sum(r["status"] == "not explained" for r in rows.values()) == 2   # 2 without keypoints
    assert rows[items[2].person]["status"] == "ok"
    assert rows[items[7].person]["status"] == "failed"
    assert rows[items[7].person]["error"] == "worker died on this person 3 times (last: killed by SIGKILL)"
    assert sum(r["status"] == "ok" for r in rows.values()) == 11
    assert len(list(out.glob("*_attention.png"))) == 11
    assert not [p for p in out.iterdir() if p.name.startswith(".")]      # nothing half-written
    # the resumed run does only the failed person (no kill this time)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "1 figure made, 11 up to date, 0 failed" in again.stderr


def test_kill_9_of_a_worker_from_outside_mid_run(coco_dir, small_weights, tmp_path):
    items = coco_items(coco_dir / "test_coco.json", coco_dir)
    out = tmp_path / "figs"
    killed = []

    def kill_one_worker_once_work_has_started():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not list(out.glob("*.png")):
            time.sleep(0.05)
        workers = [p for p in multiprocessing.active_children() if p.name.startswith("tpexplain-batch")]
        if workers:
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(workers[0].pid)

    killer = threading.Thread(target=kill_one_worker_once_work_has_started, daemon=True)
    killer.start()
    summary = run_batch(items, ["attention"], out, weights=str(small_weights), jobs=2, options=OPTIONS,
                        progress=False)
    killer.join(10)
    assert killed, "no worker to kill"
    assert (summary.made, summary.failed) == (12, 0), summary.failures
    assert len(summary.retried) == 1 and summary.retried[0][2] == "killed by SIGKILL"
    assert "1 retry of 1 person after a worker died" in str(summary)
    rows = [r for r in read_manifest(out / "manifest.jsonl") if r["status"] != "not explained"]
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    assert all((out / r["output"]).stat().st_size == r["bytes"] for r in rows)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]      # nothing half-written
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("tpexplain-batch")]


def test_a_run_that_cannot_start_leaves_the_output_folder_alone(coco_dir, small_weights, tmp_path):
    items = coco_items(coco_dir / "test_coco.json", coco_dir)[:1]
    unsafe = tmp_path / "unsafe.pth"            # needs unpickling an arbitrary object: refused
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Path("x")}, unsafe)
    new = tmp_path / "new" / "figs"
    for kwargs in ({"weights": str(unsafe)}, {"weights": str(tmp_path / "missing.pth")},
                   {"model_name": "no-such-model", "weights": "random"}):
        with pytest.raises(ValueError):
            run_batch(items, ["attention"], new, jobs=2, options=OPTIONS, progress=False, **kwargs)
        assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="unknown keypoint"):
        run_batch(items, ["attention"], new, options=FigureOptions(keypoints="l_ankel"), weights="random")
    assert not (tmp_path / "new").exists()

    # a folder with a good run in it is not modified by a run that cannot start
    good = tmp_path / "good"
    assert run_batch(items, ["attention"], good, weights=str(small_weights), jobs=1, options=OPTIONS,
                     progress=False).made == 1
    before = _listing(good)
    result = CliRunner().invoke(main, ["batch", "--coco", str(coco_dir / "test_coco.json"), "--images",
                                       str(coco_dir), "--out", str(good), "--weights", str(unsafe), "--force"])
    assert result.exit_code == 1 and result.output.count("Error:") == 1, result.output
    assert _listing(good) == before
    result = CliRunner().invoke(main, ["batch", str(coco_dir), "--out", str(tmp_path / "new"), "-k", "l_ankel",
                                       "--weights", "random"])
    assert result.exit_code != 0 and not (tmp_path / "new").exists()


def test_a_run_whose_every_figure_fails_writes_nothing(coco_dir, small_weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes((coco_dir / "000000000785.jpg").read_bytes())
    out = tmp_path / "out"
    args = ["batch", str(images), "--whole-image", "--out", str(out), "--weights", str(small_weights),
            "-k", "l_ankle", "--dpi", "40", "--jobs", "1"]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = _listing(out)
    (images / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg any more")
    result = CliRunner().invoke(main, args + ["--force"])
    assert result.exit_code == 1 and "cannot decode" in result.output
    assert "0 figures made, 0 up to date, 1 failed" in result.output
    assert f"nothing written to {out}" in result.output
    assert _listing(out) == before                 # the good manifest, gallery and figure are kept
    # into a new folder: no folder, no gallery of failures
    result = CliRunner().invoke(main, args[:3] + ["--out", str(tmp_path / "fresh")] + args[5:])
    assert result.exit_code == 1 and not (tmp_path / "fresh").exists()


def test_jobs_are_bounded_by_the_cores(coco_dir, small_weights, tmp_path, caplog):
    from tpexplain.batch import available_cores
    items = coco_items(coco_dir / "test_coco.json", coco_dir)[:1]
    summary = run_batch(items, ["attention"], tmp_path / "o", weights=str(small_weights), jobs=1000,
                        options=OPTIONS, progress=False)
    assert summary.made == 1
    cap = 2 * available_cores()
    assert f"1000 jobs is more than twice the {cap // 2} cores this process may use: at most {cap} workers" in \
        [r.getMessage() for r in caplog.records]
