"""`tpexplain attention`, `models` and `download` as a user runs them."""
import functools
import http.server
import socket
import subprocess
import sys
import threading

import pytest
import torch

from conftest import SKIER, SKIER_BOX


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tpexplain", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def assert_one_line_error(result, *words):
    assert result.returncode != 0
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
        extra, words = ["--bbox", "1,2,three,4"], ["bad bbox"]
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
    assert_one_line_error(r, *words)
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_from_a_local_server(http_server, tmp_path, tp_r_a3_weights):
    from tpexplain.zoo.download import sha256
    root, base = http_server
    (root / "w.pth").write_bytes(tp_r_a3_weights.read_bytes())
    dest = tmp_path / "zoo"
    r = run("download", "tp-r-a3", "--url", f"{base}/w.pth", "--dir", dest, "--sha256", sha256(tp_r_a3_weights))
    assert r.returncode == 0, r.stderr
    assert (dest / "tp_r_256x192_enc3_d256_h1024_mh8.pth").read_bytes() == tp_r_a3_weights.read_bytes()
    # a wrong hash, a file that is not this model, a server that is not there: one-line errors, no file
    r = run("download", "tp-r-a3", "--url", f"{base}/w.pth", "--dir", tmp_path / "z2", "--sha256", "0" * 64)
    assert_one_line_error(r, "sha256 mismatch")
    r = run("download", "tp-r-a4", "--url", f"{base}/w.pth", "--dir", tmp_path / "z3")
    assert_one_line_error(r, "does not fit")
    r = run("download", "tp-r-a3", "--url", f"http://127.0.0.1:{_free_port()}/w.pth", "--dir", tmp_path / "z4")
    assert_one_line_error(r, "cannot download")
    for d in ("z2", "z3", "z4"):
        assert not any((tmp_path / d).glob("*.pth")) if (tmp_path / d).exists() else True
