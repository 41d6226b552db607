"""`tpexplain download`: checkpoints into the per-user cache over real HTTP; ViTPose from a stand-in HF Hub."""
import contextlib
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
import torch

import tpexplain
from test_vitpose import hf_config, to_hf
from tpexplain import zoo
from tpexplain.zoo.checkpoint import CheckpointError
from tpexplain.zoo.download import download_checkpoint, sha256
from tpexplain.zoo.safetensors import save_file

A3_FILE = "tp_r_256x192_enc3_d256_h1024_mh8.pth"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(handler):
    """A real HTTP server on 127.0.0.1 in a thread; yields its base address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def www(tmp_path):
    """A folder served over HTTP: (folder, base address)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve(functools.partial(QuietFiles, directory=str(root))) as base:
        yield root, base


@pytest.fixture
def home(tmp_path, monkeypatch):
    """$TPEXPLAIN_HOME in a fresh folder (downloads land in home/checkpoints)."""
    path = tmp_path / "home"
    monkeypatch.setenv("TPEXPLAIN_HOME", str(path))
    monkeypatch.delenv("TPEXPLAIN_MODELS", raising=False)
    return path


def listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def run(*args, env=None, code=None):
    """`python -m tpexplain ARGS` (or `python -c CODE`) in a fresh interpreter with `env`."""
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "tpexplain", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def assert_one_line_error(result, *words):
    assert result.returncode == 1, (result.stdout, result.stderr)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error:") and "Traceback" not in err, err
    for w in words:
        assert w in err, err


# ---------------------------------------------------------------------------------------------------
# A checkpoint file over HTTP, in process

def test_download_lands_in_the_cache_and_load_finds_it(www, home, tp_r_a3_weights):
    root, base = www
    shutil.copy(tp_r_a3_weights, root / "w.pth")
    path = download_checkpoint("tp-r-a3", url=f"{base}/w.pth", sha=sha256(tp_r_a3_weights))
    assert path == home / "checkpoints" / A3_FILE
    assert path.read_bytes() == tp_r_a3_weights.read_bytes()
    assert listing(home / "checkpoints") == [A3_FILE]       # no temp or partial file left beside it
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask     # an ordinary file, not mkstemp's 0600
    # the zoo now finds it, and `load` gives exactly the served weights
    assert zoo.checkpoint_path("tp-r-a3") == path
    model = tpexplain.load("tp-r-a3").model
    want = torch.load(tp_r_a3_weights, weights_only=True)
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
    # present: no second download (this address answers nothing)
    assert download_checkpoint("tp-r-a3", url=f"http://127.0.0.1:{free_port()}/w.pth") == path


@pytest.mark.parametrize("case", ["sha256", "model", "no_server", "not_found", "not_a_checkpoint"])
def test_failed_download_leaves_nothing(case, www, home, tp_r_a3_weights):
    root, base = www
    shutil.copy(tp_r_a3_weights, root / "w.pth")
    (root / "junk.pth").write_bytes(b"this is an HTML error page, not a checkpoint" * 100)
    name, url, sha, error, words = "tp-r-a3", f"{base}/w.pth", None, ValueError, []
    if case == "sha256":
        sha, words = "0" * 64, ["sha256 mismatch"]
    elif case == "model":
        name, error, words = "tp-r-a4", CheckpointError, ["does not fit 'tp-r-a4'", "resembles zoo model 'tp-r-a3'"]
    elif case == "no_server":
        url, words = f"http://127.0.0.1:{free_port()}/w.pth", ["cannot download", "refused"]
    elif case == "not_found":
        url, words = f"{base}/nope.pth", ["cannot download", "404"]
    elif case == "not_a_checkpoint":
        url, error, words = f"{base}/junk.pth", CheckpointError, ["cannot read checkpoint"]
    with pytest.raises(error) as info:
        download_checkpoint(name, url=url, sha=sha)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert listing(home / "checkpoints") == []               # no file, no temp file, no torch.hub .partial
    assert listing(root) == ["junk.pth", "w.pth"]


def test_a_failed_forced_download_keeps_the_file_in_place(www, home, tp_r_a3_weights):
    root, base = www
    shutil.copy(tp_r_a3_weights, root / "w.pth")
    path = download_checkpoint("tp-r-a3", url=f"{base}/w.pth")
    torch.save({"other": torch.zeros(2)}, root / "w.pth")   # the address now serves something else
    with pytest.raises(CheckpointError, match="does not fit"):
        download_checkpoint("tp-r-a3", url=f"{base}/w.pth", force=True)
    assert path.read_bytes() == tp_r_a3_weights.read_bytes()
    assert listing(path.parent) == [A3_FILE]


def test_folder_and_bad_sha256(www, home, tmp_path, tp_r_a3_weights):
    root, base = www
    shutil.copy(tp_r_a3_weights, root / "w.pth")
    with pytest.raises(ValueError, match="64 hex digits"):
        download_checkpoint("tp-r-a3", url=f"{base}/w.pth", sha="abc123")
    path = download_checkpoint("tp-r-a3", url=f"{base}/w.pth", folder=tmp_path / "mine")
    assert path == tmp_path / "mine" / A3_FILE and path.is_file()
    assert listing(home / "checkpoints") == []


@pytest.mark.parametrize("name", ["tokenpose-t", "vitpose-s", "vitpose-h-simple"])
def test_no_download_address_says_where_to_get_the_file(name, home):
    with pytest.raises(ValueError) as info:
        download_checkpoint(name)
    message = str(info.value)
    e = zoo.entry(name)
    assert "\n" not in message
    assert str(home / "checkpoints" / e["checkpoint"]) in message and "--weights" in message
    assert (e.get("weights_page") or "no official weights") in message
    assert not (home / "checkpoints").exists()                # nothing was attempted


def test_bundled_model_is_already_present(home):
    assert download_checkpoint("default") == zoo.bundled_dir() / "default.pth"


def test_without_huggingface_hub_the_error_says_how_to_install(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)   # as if it were not installed
    with pytest.raises(ValueError, match=re.escape('pip install "tpexplain[hf]"')):
        download_checkpoint("vitpose-b")


# ---------------------------------------------------------------------------------------------------
# Bounds: a total deadline (a silent or trickling server), a size cap; nothing left behind

@contextlib.contextmanager
def silent_server():
    """Accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        srv.close()


class Trickle(http.server.BaseHTTPRequestHandler):
    """Announces a big body and sends one byte every 0.2 s (a per-read timeout never fires)."""
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(100):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)


class Endless(http.server.BaseHTTPRequestHandler):
    """A body without a length that never ends."""
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"\0" * 65536)
        except OSError:
            return


@pytest.mark.parametrize("case", ["silent", "trickle", "endless"])
def test_download_is_bounded_and_leaves_nothing(case, home):
    servers = {"silent": silent_server(), "trickle": serve(Trickle), "endless": serve(Endless)}
    start = time.monotonic()
    with servers[case] as base:
        with pytest.raises(ValueError) as info:
            download_checkpoint("tp-r-a3", url=f"{base}/w.pth", deadline=1.5, max_bytes=1 << 20)
    assert time.monotonic() - start < 6
    message = str(info.value)
    assert "\n" not in message and "cannot download" in message, message
    assert ("1,048,576-byte limit" if case == "endless" else "within 1.5 s") in message, message
    assert listing(home / "checkpoints") == []


def test_announced_size_over_the_cap_is_refused_before_reading(www, home, tp_r_a3_weights):
    root, base = www
    shutil.copy(tp_r_a3_weights, root / "w.pth")
    with pytest.raises(ValueError, match="announces .* bytes, over the 1,000-byte limit"):
        download_checkpoint("tp-r-a3", url=f"{base}/w.pth", max_bytes=1000)
    assert listing(home / "checkpoints") == []


# ---------------------------------------------------------------------------------------------------
# The command, as a user runs it

def cli_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TPEXPLAIN_"))}
    env.update(TPEXPLAIN_HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf"), **extra)
    return env


def test_download_command(www, tmp_path, tp_r_a3_weights):
    root, base = www
    shutil.copy(tp_r_a3_weights, root / "w.pth")
    r = run("download", "tp-r-a3", "--url", f"{base}/w.pth", env=cli_env(tmp_path))
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "home" / "checkpoints" / A3_FILE
    assert r.stdout.strip().splitlines()[-1] == str(dest)
    assert dest.read_bytes() == tp_r_a3_weights.read_bytes()
    assert "\r" not in r.stderr                               # no progress bar: stderr is not a terminal
    r = run("download", "tokenpose-t", env=cli_env(tmp_path))
    assert_one_line_error(r, "no official weights", "--weights")


# ---------------------------------------------------------------------------------------------------
# ViTPose from the Hugging Face Hub: a local server answers what huggingface_hub's snapshot_download asks
# (model info, the tree listing, HEAD and GET of /resolve/), and HF_ENDPOINT points at it

def hub_handler(repos: dict, seen: list):
    """`repos`: repo id → folder of files. Requests are appended to `seen` as (method, path)."""
    files = {repo: {p.name: (p, sha256(p)) for p in sorted(folder.iterdir())} for repo, folder in repos.items()}
    commits = {repo: hashlib.sha1(repo.encode()).hexdigest() for repo in repos}
    name = r"(?P<repo>[^/]+/[^/]+)"

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.answer(body=False)

        def do_GET(self):
            self.answer(body=True)

        def answer(self, body: bool):
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            seen.append((self.command, path))
            if m := re.fullmatch(rf"/api/models/{name}/revision/(?P<rev>[^/]+)", path):
                if m["repo"] in repos:
                    repo = m["repo"]
                    return self.json({"id": repo, "sha": commits[repo],
                                      "siblings": [{"rfilename": f} for f in files[repo]]}, body)
            elif m := re.fullmatch(rf"/api/models/{name}/tree/(?P<rev>[^/]+)", path):
                if m["repo"] in repos and m["rev"] == commits[m["repo"]]:
                    tree = []
                    for f, (p, digest) in files[m["repo"]].items():
                        size = p.stat().st_size
                        item = {"type": "file", "path": f, "size": size,
                                "oid": hashlib.sha1(f"blob {size}\0".encode() + p.read_bytes()).hexdigest()}
                        if f.endswith(".safetensors"):
                            item["lfs"] = {"oid": digest, "size": size, "pointerSize": 134}
                        tree.append(item)
                    return self.json(tree, body)
            elif m := re.fullmatch(rf"/{name}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path):
                repo = m["repo"]
                if repo in repos and m["rev"] == commits[repo] and m["file"] in files[repo]:
                    p, digest = files[repo][m["file"]]
                    self.send_response(200)
                    self.send_header("X-Repo-Commit", commits[repo])
                    self.send_header("ETag", f'"{digest}"')
                    self.send_header("Content-Length", str(p.stat().st_size))
                    self.end_headers()
                    if body:
                        with open(p, "rb") as f:
                            shutil.copyfileobj(f, self.wfile, 1 << 20)
                    return
            self.send_response(404)
            if path.startswith("/api/"):   # what the Hub says of a repo it does not have
                self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def json(self, obj, body: bool):
            data = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Hub


@pytest.fixture(scope="module")
def vitpose_b_hf(tmp_path_factory):
    """An HF-layout folder (config.json, model.safetensors, README.md) of ViTPose-B with seeded random weights,
    and the per-key sums of those weights in our own layout."""
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in zoo.build("vitpose-b").state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) if dt.is_floating_point else torch.zeros(s, dtype=dt)
             for k, (s, dt) in shapes.items()}
    folder = tmp_path_factory.mktemp("hub") / "vitpose-base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config("classic", 768, layer_norm_eps=1e-12)))
    (folder / "README.md").write_text("model card: not needed by tpexplain, so never downloaded\n")
    save_file(to_hf(state), folder / "model.safetensors", metadata={"format": "pt"})
    return folder, {k: v.double().sum().item() for k, v in state.items()}


SUMS = ("import json, sys, tpexplain; from tpexplain import zoo; from tpexplain.zoo.download import "
        "download_checkpoint; print(zoo.checkpoint_path('vitpose-b')); print(download_checkpoint('vitpose-b')); "
        "m = tpexplain.load('vitpose-b').model; "
        "print(json.dumps({k: v.double().sum().item() for k, v in m.state_dict().items()}))")


def test_vitpose_from_the_hub_then_offline(vitpose_b_hf, tmp_path):
    folder, sums = vitpose_b_hf
    seen = []
    with serve(hub_handler({"usyd-community/vitpose-base": folder}, seen)) as endpoint:
        r = run("download", "vitpose-b", env=cli_env(tmp_path, HF_ENDPOINT=endpoint))
        # into a folder of one's own instead of HF's cache: a Hugging Face model folder for --weights
        mine = run(code=f"from tpexplain.zoo.download import download_checkpoint as d; "
                        f"print(d('vitpose-b', folder={str(tmp_path / 'mine')!r}))",
                   env=cli_env(tmp_path, HF_ENDPOINT=endpoint))
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.strip().splitlines()[-1] == str(tmp_path / "mine")
    assert (tmp_path / "mine" / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert r.returncode == 0, r.stderr
    assert "Fetching" not in r.stderr and "\r" not in r.stderr     # no progress bars off the terminal
    snapshot = tmp_path / "hf" / "hub" / "models--usyd-community--vitpose-base" / "snapshots"
    path = snapshot / hashlib.sha1(b"usyd-community/vitpose-base").hexdigest()
    assert r.stdout.strip().splitlines()[-1] == str(path)
    assert (path / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert ("GET", "/api/models/usyd-community/vitpose-base/revision/main") in seen
    assert not any("README" in p for _, p in seen)
    assert not (tmp_path / "home").exists()                  # the files stay in Hugging Face's cache
    # offline, with no server at all: the zoo finds the cached snapshot, download says it is present,
    # and load gives exactly the served weights (the HF q/k/v split back into our qkv)
    r = run(code=SUMS, env=cli_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stderr
    found, downloaded, got = r.stdout.strip().splitlines()[-3:]
    assert found == downloaded == str(path)
    assert json.loads(got) == pytest.approx(sums, rel=1e-12)


def test_hub_repo_that_does_not_fit_the_model(tmp_path):
    # a repo holding only a classic (deconvolution) head, served as the simple-decoder ViTPose-B
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in zoo.build("vitpose-b").state_dict().items() if k.startswith("keypoint_head.")}
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hf_config("simple", 768)))
    save_file(to_hf({k: torch.zeros(s) for k, s in shapes.items()}), folder / "model.safetensors")
    with serve(hub_handler({"usyd-community/vitpose-base-simple": folder}, [])) as endpoint:
        r = run("download", "vitpose-b-simple", env=cli_env(tmp_path, HF_ENDPOINT=endpoint))
    assert_one_line_error(r, "Hugging Face repo usyd-community/vitpose-base-simple", "does not fit 'vitpose-b-simple'",
                          "missing (e.g. backbone.")


@pytest.mark.parametrize("case", ["no_server", "offline", "unknown_repo"])
def test_hub_errors_are_one_line(case, tmp_path):
    seen = []
    with serve(hub_handler({}, seen)) as endpoint:
        env = cli_env(tmp_path, HF_ENDPOINT=endpoint)
        if case == "no_server":
            env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
            words = ["cannot download usyd-community/vitpose-base", "no network?"]
        elif case == "offline":
            env["HF_HUB_OFFLINE"], words = "1", ["HF_HUB_OFFLINE is set", "not (completely) in the Hugging Face cache"]
        else:
            words = ["usyd-community/vitpose-base is not on the Hugging Face Hub", endpoint]
        r = run("download", "vitpose-b", env=env)
    assert_one_line_error(r, *words)
    if case == "offline":
        assert seen == []
