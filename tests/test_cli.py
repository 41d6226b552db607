"""The `tpexplain` command as a user runs it: figures, the zoo, exit codes, messages, start-up cost."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import DATA, SKIER, SKIER_BOX


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tpexplain", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def assert_one_line_error(result, *words, code=None):
    assert result.returncode != 0 if code is None else result.returncode == code, (result.returncode, result.stderr)
    err = result.stderr.strip()
    lines = err.splitlines()
    # progress lines may precede it; the error itself is one line, last, with no traceback
    assert lines and lines[-1].startswith("Error:") and "Traceback" not in err, err
    assert sum(line.startswith("Error") for line in lines) == 1, err
    err = lines[-1]
    for w in words:
        assert w in err, err


def test_attention_writes_a_png(tmp_path, tp_r_a3_weights):
    out = tmp_path / "fig.png"
    r = run("attention", SKIER, "--keypoint", "l_ankle", "--bbox", SKIER_BOX, "--model", "tp-r-a3",
            "--weights", tp_r_a3_weights, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.stdout.strip() == str(out)


def test_attention_all_keypoints_all_layers_default_name(tmp_path, tp_r_a3_weights):
    r = run("attention", SKIER, "--keypoint", "all", "--layer", "all", "--mode", "affected", "--no-flip",
            "--model", "tp-r-a3", "--weights", tp_r_a3_weights, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "000000000785_all_affected_tp-r-a3.png").exists()


@pytest.mark.parametrize("case", ["missing", "unreadable", "directory", "keypoint", "bbox", "bbox_outside",
                                  "unwritable", "layer", "model", "weights"])
def test_bad_input_gives_one_line_error_and_no_file(case, tmp_path, tp_r_a3_weights):
    out = tmp_path / "out.png"
    image, extra, words = SKIER, [], []
    if case == "missing":
        image, words = tmp_path / "nope.jpg", ["not found"]
    elif case == "unreadable":
        image = tmp_path / "broken.jpg"
        image.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
        words = ["cannot decode"]
    elif case == "directory":
        image, words = tmp_path, ["directory"]
    elif case == "keypoint":
        extra, words = ["--keypoint", "l_ankel"], ["did you mean l_ankle"]
    elif case == "bbox":
        extra, words = ["--bbox", "1,2,three,4"], ["--bbox", "four numbers"]
    elif case == "bbox_outside":
        extra, words = ["--bbox", "5000,5000,10,10"], ["outside"]
    elif case == "unwritable":
        out, words = tmp_path / "no" / "such" / "dir" / "x.png", ["does not exist"]
    elif case == "layer":
        extra, words = ["--layer", "9"], ["out of range"]
    elif case == "model":
        extra, words = ["--model", "tp-r-a5"], ["unknown model", "tp-r-a4"]
    elif case == "weights":
        bad = tmp_path / "w.pth"
        torch.save({"foo": torch.zeros(3)}, bad)
        extra, words = ["--weights", bad], ["does not fit"]
    args = ["attention", image, "--model", "tp-r-a3", "--weights", tp_r_a3_weights, "-o", out]
    if "--keypoint" not in extra:
        args += ["--keypoint", "l_ankle"]
    r = run(*args, *extra)
    # a malformed command line is a usage error (2); a well-formed one that cannot be carried out fails (1)
    assert_one_line_error(r, *words, code=2 if case == "bbox" else 1)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".png"]


def test_odd_images_work(tmp_path, tp_r_a3_weights):
    import cv2
    import numpy as np
    rgb = cv2.imread(str(SKIER))
    variants = {
        "gray.png": cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY),
        "rgba.png": cv2.cvtColor(rgb, cv2.COLOR_BGR2BGRA),
        "deep.png": rgb.astype(np.uint16) * 257,
    }
    for name, arr in variants.items():
        cv2.imwrite(str(tmp_path / name), arr)
        r = run("attention", tmp_path / name, "-k", "nose", "--no-flip", "--model", "tp-r-a3",
                "--weights", tp_r_a3_weights, "-o", tmp_path / f"{name}.out.png")
        assert r.returncode == 0, (name, r.stderr)


def test_models_lists_the_zoo():
    r = run("models")
    assert r.returncode == 0
    for name in ("default", "tp-r-a3", "tp-r-a4", "tp-h-s", "tp-h-a4", "tp-h-a6"):
        assert name in r.stdout


@pytest.mark.parametrize("args, words", [
    (["attention"], ["Missing argument 'IMAGE'"]),
    (["attention", SKIER, "-k", "nose", "--bogus"], ["No such option", "--bogus"]),
    (["attention", SKIER, "-k", "nose", "--mode", "sideways"], ["--mode", "sideways"]),
    (["occlusion", SKIER, "-k", "l_ankle", "--sweep", "--symmetric"], ["not both"]),
    (["batch", "--out", "x"], ["FOLDER or --coco"]),
    (["findings", "--out", "x"], ["--coco", "--synthetic"]),
    (["nosuch"], ["No such command"]),
    (["-v", "-q", "models"], ["not both"]),
])
def test_usage_errors_exit_2_with_one_line(args, words, tmp_path):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("Error: "), r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert r.stdout == "" and list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tpexplain", "attention", tmp_path / "nope.jpg", "-k", "nose"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "TPEXPLAIN_DEBUG": "1"})
    assert r.returncode == 1 and "Traceback" in r.stderr and "image not found" in r.stderr


def test_closed_stdout_exits_quietly():
    """`tpexplain models | head -1`: the reader goes away; no error message, no traceback."""
    p = subprocess.Popen([sys.executable, "-m", "tpexplain", "models"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()   # before the command has printed anything: its first write fails
    err = p.stderr.read()
    assert p.wait(timeout=300) == 141 and err == "", err


def test_ctrl_c_exits_130(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "tpexplain", "train", "--iters", "100000", "--batch-size", "2",
                          "--workers", "0", "--threads", "1", "--no-bf16", "--out", tmp_path / "run"],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    for line in p.stderr:             # interrupt once training has started
        lines.append(line)
        if "forward pass" in line:
            p.send_signal(signal.SIGINT)
            break
    lines += p.stderr.readlines()
    assert p.wait(timeout=300) == 130, lines
    assert lines[-1].strip() == "Error: interrupted" and not any("Traceback" in x for x in lines), lines


def test_logging_levels(tmp_path):
    """Progress and messages go to stderr through the "tpexplain" logger; -q keeps warnings and errors only."""
    assert run("synth", "--n", "1", "--out", tmp_path / "s").returncode == 0
    args = ["eval", "--coco", tmp_path / "s" / "annotations.json", "--images", tmp_path / "s" / "images",
            "--weights", "random", "--no-flip"]
    r = run(*args)
    assert r.returncode == 0 and "eval: 1/1 images" in r.stderr, r.stderr
    q = run("-q", *args)
    assert q.returncode == 0 and q.stderr == "" and q.stdout == r.stdout, q.stderr


def test_help_and_version_import_neither_torch_nor_matplotlib():
    code = textwrap.dedent("""
        import sys
        from tpexplain.cli import main
        calls = [["--help"], ["--version"], *[[name, "--help"] for name in main.commands]]
        for args in calls:
            try:
                main(args, prog_name="tpexplain")
            except SystemExit as e:
                assert e.code == 0, (args, e.code)
        print(len(calls), sorted(m for m in ("torch", "matplotlib") if m in sys.modules))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == f"{2 + 12} []"


def test_mpii_model_keypoints(tmp_path, monkeypatch):
    """The MPII model's own keypoint names (head_top) and 'all' of its 16; default names say 'all'."""
    from click.testing import CliRunner

    from tpexplain.cli import main
    monkeypatch.chdir(tmp_path)
    for k, tag in (("head_top", "head_top"), ("all", "all")):
        r = CliRunner().invoke(main, ["attention", str(DATA / "000000000785.jpg"), "-k", k, "--no-flip",
                                      "--model", "tokenpose-l-d6", "--weights", "random"])
        assert r.exit_code == 0, r.output
        out = tmp_path / f"000000000785_{tag}_dependency_tokenpose-l-d6.png"
        assert r.output.strip().splitlines()[-1] == out.name and out.read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(main, ["attention", str(SKIER), "-k", "nose", "--model", "tokenpose-l-d6",
                                  "--weights", "random"])
    assert r.exit_code == 1 and "unknown keypoint 'nose'" in r.output
