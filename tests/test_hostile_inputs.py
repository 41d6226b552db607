"""Hostile inputs and outputs (issue 13): every case fails with one "Error:" line, no traceback, and leaves every
file as it was (the input, a good earlier output), or writes exactly the outputs it is allowed to.

Most cases run in this process through click's CliRunner (one torch import for all); the cases that fail
before the model loads cost milliseconds. A FIFO is watched by a thread that reports any reader, so a
regression fails instead of hanging. One subprocess case checks what a user's shell sees.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA, SKIER, SKIER_BOX

from tpexplain.cli.main import main

ANN = DATA / "test_coco.json"


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: kind and, for regular files, size and content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = os.lstat(p)
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
        out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), st.st_size, digest)
    return out


def fails(args, folder: Path, *words, allowed=(), code=None):
    """Run the CLI in-process; assert the one-line error and that nothing in `folder` changed but `allowed`."""
    before = snapshot(folder)
    r = CliRunner().invoke(main, [str(a) for a in args])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code != 0 if code is None else r.exit_code == code, (r.exit_code, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    for w in words:
        assert w in lines[0], (w, lines[0])
    after = snapshot(folder)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed <= set(allowed), changed
    return lines[0]


@pytest.fixture
def work(tmp_path) -> Path:
    """A folder with a copy of the test photo (the input) and an earlier good output of ours."""
    shutil.copy(SKIER, tmp_path / "photo.jpg")
    from tpexplain.figures import save_figure
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    save_figure(fig, tmp_path / "good.png")
    return tmp_path


class FifoWatch:
    """A FIFO and a thread that notices (and releases) any process opening it for reading."""

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.path, self.opened, self._stop = path, False, False
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self):
        while not self._stop:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)   # succeeds only while a reader waits
            except OSError:
                time.sleep(0.02)
                continue
            self.opened = True
            os.close(fd)                                               # EOF: the reader goes on

    def close(self):
        self._stop = True
        self._thread.join(1)


@pytest.fixture
def fifo(work):
    watches = []

    def make(name):
        watches.append(FifoWatch(work / name))
        return watches[-1]
    yield make
    for w in watches:
        w.close()


# ----------------------------------------------------------------------------------- outputs: the policy

@pytest.mark.parametrize("command", [["attention", "-k", "l_ankle"], ["layers", "-k", "l_ankle"],
                                     ["occlusion", "-k", "l_ankle"], ["kp-attention", "--model", "tokenpose-t"],
                                     ["explore"]])
def test_output_equal_to_the_input_is_refused(work, command):
    photo = work / "photo.jpg"
    if command[0] == "explore":      # the extension check comes first: name the input as an .html
        photo = work / "photo.html"
        shutil.copy(SKIER, photo)
    fails([command[0], photo, *command[1:], "-o", photo], work, "input")
    # the same file by another name (a hard link), and with --force: still refused
    os.link(photo, work / f"link{photo.suffix}")
    fails([command[0], photo, *command[1:], "-o", work / f"link{photo.suffix}", "--force"], work, "input")


def test_special_files_are_never_replaced(work, fifo):
    fifo("out.png")
    fails(["attention", work / "photo.jpg", "-k", "l_ankle", "-o", work / "out.png"], work, "FIFO")
    fifo("page.html")
    fails(["explore", work / "photo.jpg", "-o", work / "page.html", "--force"], work, "FIFO")
    (work / "dir.png").mkdir()
    fails(["kp-attention", work / "photo.jpg", "--model", "tokenpose-t", "-o", work / "dir.png"], work, "directory")
    if os.geteuid() == 0:            # a device node (a copy of /dev/null's numbers, in the test's folder)
        os.mknod(work / "null.png", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        fails(["attention", work / "photo.jpg", "-k", "l_ankle", "-o", work / "null.png"], work, "device")
        fails(["layers", work / "photo.jpg", "-k", "l_ankle", "-o", work / "null.png"], work, "device")
        assert stat.S_ISCHR(os.lstat(work / "null.png").st_mode)


def test_extension_decides_the_format(work):
    fails(["attention", work / "photo.jpg", "-k", "l_ankle", "-o", work / "fig.txt"], work, ".png", ".svg", code=2)
    fails(["explore", work / "photo.jpg", "-o", work / "page.png"], work, ".html", code=2)
    fails(["layers", work / "photo.jpg", "-k", "l_ankle", "-o", work / "noext"], work, ".pdf", code=2)


@pytest.mark.parametrize("command", ["layers", "occlusion"])
@pytest.mark.parametrize("side", [".json", ".csv"])
def test_side_outputs_not_ours_are_kept(work, command, side):
    (work / f"data{side}").write_text("a user's own numbers\n")
    fails([command, work / "photo.jpg", "-k", "l_ankle", "-o", work / "data.png"], work, f"data{side}", "--force")


def test_a_user_file_is_replaced_only_with_force_and_ours_always(work):
    user = work / "fig.png"
    shutil.copy(SKIER, user)         # any file not written by tpexplain
    fails(["attention", work / "photo.jpg", "-k", "l_ankle", "--no-flip", "-o", user], work, "--force")
    r = CliRunner().invoke(main, ["attention", str(work / "photo.jpg"), "-k", "l_ankle", "--no-flip",
                                  "--bbox", SKIER_BOX, "-o", str(user), "--force"])
    assert r.exit_code == 0, r.stderr
    from tpexplain.io import check_output, made_by_tpexplain
    assert made_by_tpexplain(user) and check_output(user) == user    # now ours: replaced without --force


def test_synth_never_overwrites_a_dataset_without_force(tmp_path):
    r = CliRunner().invoke(main, ["synth", "--n", "1", "--out", str(tmp_path / "ds")])
    assert r.exit_code == 0, r.stderr
    fails(["synth", "--n", "2", "--out", tmp_path / "ds"], tmp_path, "annotations.json", "--force")
    r = CliRunner().invoke(main, ["synth", "--n", "2", "--out", str(tmp_path / "ds"), "--force"])
    assert r.exit_code == 0 and len(json.loads((tmp_path / "ds" / "annotations.json").read_text())["images"]) == 2
    (tmp_path / "file").write_text("x")
    fails(["synth", "--n", "1", "--out", tmp_path / "file"], tmp_path, code=2)


# ----------------------------------------------------------------------------------- a full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 200 kB tmpfs (root only), or None where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield None
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("command", [["attention", "-k", "l_ankle"], ["layers", "-k", "l_ankle"], ["explore"]])
def test_a_full_disk_keeps_the_previous_output_and_fails(small_disk, monkeypatch, command):
    from tpexplain.figures import save_figure
    import matplotlib.pyplot as plt
    if small_disk is None:           # test_a_failing_write_leaves_no_partial_file simulates it instead
        pytest.skip("needs root to mount a small tmpfs")
    ext = ".html" if command[0] == "explore" else ".png"
    out = small_disk / f"out{ext}"
    if ext == ".png":
        fig, ax = plt.subplots(figsize=(1, 1))
        save_figure(fig, out)        # the earlier good output, ours
    else:
        out.write_text('<meta name="generator" content="tpexplain">earlier page')
    free = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * max(0, free.f_bavail * free.f_frsize - 8192))
    fails([command[0], SKIER, *command[1:], "--bbox", SKIER_BOX, "--no-flip", "-o", out], small_disk,
          "No space left")
    assert not [p for p in small_disk.iterdir() if p.name.startswith(".")]    # no temporary file left


def test_a_failing_write_leaves_no_partial_file(work, monkeypatch):
    """Without a small filesystem: savefig writes part of the file, then the disk is full."""
    from matplotlib.figure import Figure

    def full_disk(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Figure, "savefig", full_disk)
    for command in (["attention", "-k", "l_ankle"], ["kp-attention", "--model", "tokenpose-t", "--weights", "random"]):
        fails([command[0], work / "photo.jpg", *command[1:], "--no-flip", "--bbox", SKIER_BOX,
               "-o", work / "good.png"], work, "good.png", "No space left")


# ----------------------------------------------------------------------------------- inputs

def test_inputs_that_are_not_regular_files_are_refused_before_reading(work, fifo):
    image = fifo("image.jpg")
    fails(["attention", image.path, "-k", "l_ankle", "-o", work / "a.png"], work, "FIFO")
    fails(["layers", image.path, "-k", "l_ankle", "-o", work / "b.png"], work, "FIFO")
    ann = fifo("ann.json")
    fails(["batch", "--coco", ann.path, "--images", DATA, "--out", work / "batch"], work, "FIFO")
    fails(["findings", "--coco", ann.path, "--images", DATA, "--out", work / "report"], work, "FIFO")
    fails(["eval", "--coco", ann.path, "--images", DATA], work, "FIFO")
    boxes = fifo("boxes.csv")
    fails(["batch", DATA, "--boxes", boxes.path, "--out", work / "batch"], work, "FIFO")
    assert not (image.opened or ann.opened or boxes.opened)
    if os.geteuid() == 0:
        os.mknod(work / "null.jpg", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        fails(["attention", work / "null.jpg", "-k", "l_ankle", "-o", work / "c.png"], work, "device")


@pytest.mark.parametrize("box, option", [("0,0,1e308,1e308", "--bbox"), ("1e308,0,5,5", "--bbox"),
                                         ("0,0,1e5,1e5", "--bbox"), ("nan,0,5,5", "--bbox"),
                                         ("0,0,inf,5", "--bbox"), ("1,2,3", "--bbox")])
def test_boxes_from_options_are_finite_and_in_range(work, box, option):
    line = fails(["attention", work / "photo.jpg", "-k", "l_ankle", option, box, "-o", work / "a.png"], work)
    assert option in line and "NaN" not in line


def test_regions_are_finite_and_in_range(work):
    for region in ("0,0,1e308,5", "0,0,1e5,1e5", "1e5,0,10,10"):
        line = fails(["occlusion", work / "photo.jpg", "-k", "l_ankle", "--region", region, "-o", work / "o.png"],
                     work)
        assert "--region" in line


def _coco_with(tmp_path: Path, **changes) -> Path:
    data = json.loads(ANN.read_text())
    ann = next(a for a in data["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd"))
    ann.update(changes)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))     # json writes NaN and Infinity, as a hostile file would hold them
    return path


@pytest.mark.parametrize("change, field", [({"bbox": [float("nan"), 0, 10, 10]}, "bbox"),
                                           ({"bbox": [0, 0, float("inf"), 10]}, "bbox"),
                                           ({"bbox": [0, 0, 1e308, 10]}, "bbox"),
                                           ({"bbox": "0,0,1,1"}, "bbox"),
                                           ({"keypoints": [float("nan")] * 51}, "keypoints"),
                                           ({"keypoints": [1.0] * 50}, "keypoints"),
                                           ({"area": float("inf")}, "area"),
                                           ({"area": -5}, "area")])
def test_coco_numbers_are_checked_where_they_are_read(work, change, field):
    bad = _coco_with(work, **change)
    for command in (["batch", "--coco", bad, "--images", DATA, "--out", work / "batch"],
                    ["findings", "--coco", bad, "--images", DATA, "--out", work / "report"]):
        line = fails(command, work)
        assert field in line and "annotation" in line


def test_eval_checks_coco_numbers(work):
    line = fails(["eval", "--coco", _coco_with(work, bbox=[0, 0, float("nan"), 1]), "--images", DATA], work)
    assert "bbox" in line and "annotation" in line


@pytest.mark.parametrize("change", [{"id": "../../escape"}, {"id": "/abs"}, {"id": "a/b"}])
def test_batch_refuses_path_like_annotation_ids(work, change):
    line = fails(["batch", "--coco", _coco_with(work, **change), "--images", DATA, "--out", work / "batch"], work)
    assert "annotation" in line and "plain name" in line


def test_batch_refuses_path_like_file_names(work):
    data = json.loads(ANN.read_text())
    data["images"][0]["file_name"] = "../" + data["images"][0]["file_name"]
    (work / "names.json").write_text(json.dumps(data))
    ids = {a["image_id"] for a in data["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")}
    if data["images"][0]["id"] in ids:
        fails(["batch", "--coco", work / "names.json", "--images", DATA, "--out", work / "batch"], work,
              "file_name", "plain name")


def test_batch_boxes_files_hold_finite_numbers(work):
    (work / "boxes.csv").write_text(f"{SKIER.name},nan,0,10,10\n")
    fails(["batch", DATA, "--boxes", work / "boxes.csv", "--out", work / "batch"], work, "bbox")
    (work / "boxes.json").write_text(json.dumps({SKIER.name: [[0, 0, 1e308, 5]]}))
    fails(["batch", DATA, "--boxes", work / "boxes.json", "--out", work / "batch"], work, "bbox")


# ----------------------------------------------------------------------------------- handled before: kept

def test_cases_handled_before_stay_handled(work):
    photo, a = work / "photo.jpg", work / "a.png"
    fails(["attention", work / "missing.jpg", "-k", "l_ankle", "-o", a], work, "not found")
    (work / "empty.jpg").write_bytes(b"")
    fails(["attention", work / "empty.jpg", "-k", "l_ankle", "-o", a], work, "empty")
    (work / "corrupt.jpg").write_bytes(SKIER.read_bytes()[:200])
    fails(["attention", work / "corrupt.jpg", "-k", "l_ankle", "-o", a], work, "decode")
    fails(["attention", photo, "-k", "l_ankle", "--bbox", "0,0,-5,10", "-o", a], work, "--bbox", code=2)
    fails(["attention", photo, "-k", "l_ankle", "--bbox", "9000,9000,10,10", "-o", a], work, "outside")
    fails(["attention", photo, "-k", "l_elbowz", "-o", a], work, "l_elbowz")
    fails(["attention", photo, "-k", "l_ankle", "-o", work / "no" / "such" / "a.png"], work, "does not exist")
    if os.geteuid() != 0:            # root writes anywhere
        ro = work / "ro"
        ro.mkdir(mode=0o500)
        fails(["attention", photo, "-k", "l_ankle", "-o", ro / "a.png"], work, "not writable")


def test_a_real_shell_sees_one_line(work):
    r = subprocess.run([sys.executable, "-m", "tpexplain", "attention", str(work / "photo.jpg"), "-k", "l_ankle",
                        "-o", str(work / "photo.jpg")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("Error:"), r.stderr
    assert (work / "photo.jpg").read_bytes() == SKIER.read_bytes()


def test_train_outputs_follow_the_policy(work, fifo):
    base = ["train", "--iters", "1", "--batch-size", "1", "--workers", "0"]
    fails([*base, "--out", work / "run", "--export", work / "weights.txt"], work, ".pth")
    fifo("pipe.pth")
    fails([*base, "--out", work / "run", "--export", work / "pipe.pth"], work, "FIFO")
    (work / "notes.pth").write_text("not a checkpoint")
    fails([*base, "--out", work / "run", "--export", work / "notes.pth"], work, "--force")
    fails([*base, "--out", work / "good.png"], work, "is a file")
    fails([*base, "--out", work / "pipe.pth"], work, "FIFO")
