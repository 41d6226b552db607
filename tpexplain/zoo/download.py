"""`tpexplain download`: fetch an official checkpoint into the per-user cache, check its hash and that it loads."""
from __future__ import annotations

import hashlib
import http.client
import logging
import re
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import torch

from ..io import atomic_path
from ..progress import progress
from . import hub
from . import registry as zoo
from .checkpoint import load_checkpoint

logger = logging.getLogger(__name__)


def sha256(path: str | Path) -> str:
    """The hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_checkpoint(name: str, url: str | None = None, folder: str | Path | None = None,
                        force: bool = False, sha: str | None = None, deadline: float | None = None,
                        max_bytes: int | None = None) -> Path:
    """Download zoo model `name`'s checkpoint and check that it loads strictly; the path of the file or folder.

    A file (the manifest's "url", or `url`) goes to `zoo.checkpoints_dir()` ($TPEXPLAIN_HOME/checkpoints, else
    ~/.cache/tpexplain/checkpoints) or `folder`; its sha256 is checked when the manifest or `sha` gives one,
    and it appears there only once every check has passed. A model on the Hugging Face Hub (the manifest's
    "hf") is fetched into Hugging Face's own cache (or `folder`). A model with neither is an error that says
    where to get the file by hand. Errors are one-line ValueErrors (CheckpointError for a file that does not
    fit). A file download ends after `deadline` seconds in all (default DEADLINE) and at `max_bytes` (default
    the manifest's "size" when known, else MAX_BYTES), leaving nothing behind. Messages go to the "tpexplain"
    logger.
    """
    e = zoo.entry(name)
    url = url or e.get("url")
    if url:
        return _download_file(name, e, url, folder, force, sha, deadline, max_bytes)
    if sha:
        raise ValueError("a sha256 checks a single downloaded file: give it with a url (--url)")
    if e.get("hf"):
        return _download_hf(name, e, folder, force)
    present = zoo.checkpoint_path(name)
    if present is not None and not force:
        logger.info(f"{present} already present")
        return present
    raise ValueError(manual_download_message(name))


def manual_download_message(name: str) -> str:
    """Where to get a checkpoint that cannot be downloaded automatically, and where to put it."""
    e = zoo.entry(name)
    dest = zoo.checkpoints_dir() / e["checkpoint"]
    if e.get("weights_page"):
        return (f"'{name}' has no direct download (the official weights are behind share links): download the "
                f"checkpoint from {e['weights_page']} by hand and save it as {dest}, or pass --weights FILE")
    return (f"'{name}' has no download ({e.get('source', 'no official weights')}): save a checkpoint as {dest}, "
            f"or pass --weights FILE")


# Bounds of a file download: a total deadline (a server trickling a byte every few seconds never trips a
# per-read timeout), a per-read timeout, and a size cap (the manifest's "size" when known, exact; else this).
DEADLINE = 3600.0
READ_TIMEOUT = 60.0
MAX_BYTES = 4 * 2**30
_CHUNK = 1 << 20


def _download_file(name: str, e: dict, url: str, folder, force: bool, sha: str | None,
                   deadline: float | None = None, max_bytes: int | None = None) -> Path:
    folder = Path(folder).expanduser() if folder else zoo.checkpoints_dir()
    dest = folder / e["checkpoint"]
    if dest.exists() and not force:
        logger.info(f"{dest} already present")
        return dest
    expected = (sha or e.get("sha256") or "").strip().lower()
    if expected and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ValueError(f"bad sha256 '{sha}': expected 64 hex digits")
    folder.mkdir(parents=True, exist_ok=True)
    # `tmp` replaces `dest` only once the hash matched and the file loads strictly; on any failure (an
    # interrupt included) atomic_path removes it and a previous `dest` stays as it was
    with atomic_path(dest) as tmp:
        try:
            digest = fetch(url, tmp, deadline=DEADLINE if deadline is None else deadline,
                           size=e.get("size"), max_bytes=MAX_BYTES if max_bytes is None else max_bytes)
        except urllib.error.HTTPError as exc:
            raise ValueError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:  # no network, refused, truncated, bad URL
            reason = getattr(exc, "reason", None) or exc
            raise ValueError(f"cannot download {url}: {reason} (no network? copy {e['checkpoint']} into "
                             f"{folder} by hand)") from None
        if expected and digest != expected:
            raise ValueError(f"sha256 mismatch for {url}: the file is corrupt or not the official one "
                             f"(expected {expected[:12]}…)")
        check_fits(name, tmp, where=f"downloaded file for '{name}' ({url})")
    logger.info(f"saved {dest}")
    return dest


def fetch(url: str, path: str | Path, deadline: float = DEADLINE, size: int | None = None,
          max_bytes: int = MAX_BYTES, read_timeout: float = READ_TIMEOUT) -> str:
    """Write the body at `url` into `path` within `deadline` seconds in all; its sha256.

    Every socket wait is bounded by the time left, so a silent or trickling server ends the download at the
    deadline. A body longer than `size` (when known) or `max_bytes`, or shorter than its Content-Length, is
    an error. Errors are OSError (TimeoutError for the deadline) or ValueError; the caller removes `path`.
    """
    start = time.monotonic()

    def left() -> float:
        remaining = deadline - (time.monotonic() - start)
        if remaining <= 0:
            raise TimeoutError(f"no complete answer within {deadline:g} s")
        return min(remaining, read_timeout)

    cap = int(size) if size else max_bytes
    request = urllib.request.Request(url, headers={"User-Agent": "tpexplain"})
    try:
        response = urllib.request.urlopen(request, timeout=left())
    except TimeoutError:
        raise TimeoutError(f"no answer within {min(deadline, read_timeout):g} s") from None
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if length is not None and length > cap:
            raise ValueError(f"the server announces {length:,} bytes, over the {cap:,}-byte limit")
        sock = _socket_of(response)
        h, got = hashlib.sha256(), 0
        with open(path, "wb") as f, progress(length and -(-length // _CHUNK), f"downloading {Path(url).name}",
                                             unit="MB", enabled=sys.stderr.isatty()) as bar:
            while True:
                if sock is not None:
                    sock.settimeout(left())
                elif time.monotonic() - start > deadline:
                    left()
                try:
                    block = response.read1(_CHUNK)   # one socket read: the deadline is checked between
                except TimeoutError:
                    left()          # the deadline, if that is what ended the wait
                    raise TimeoutError(f"no data for {read_timeout:g} s") from None
                if not block:
                    break
                got += len(block)
                if got > cap:
                    raise ValueError(f"the body exceeds the {cap:,}-byte limit")
                h.update(block)
                f.write(block)
                bar.update()
    if length is not None and got != length:
        raise ValueError(f"truncated: {got:,} of {length:,} bytes")
    if size and got != int(size):
        raise ValueError(f"{got:,} bytes where {int(size):,} were expected")
    return h.hexdigest()


def _socket_of(response):
    # http.client keeps the connection's socket under its buffered reader; reaching it lets each read wait
    # only as long as the deadline leaves (None if the layout differs: the per-read timeout still applies)
    try:
        sock = response.fp.raw._sock
        return sock if hasattr(sock, "settimeout") else None
    except AttributeError:
        return None


def _download_hf(name: str, e: dict, folder, force: bool) -> Path:
    if folder is None and not force:
        cached = hub.cached_hf_folder(e["hf"])
        if cached is not None:
            logger.info(f"{cached} already present")
            return cached
    path = hub.download_hf_folder(e["hf"], local_dir=folder, force=force)
    check_fits(name, path, where=f"Hugging Face repo {e['hf']} ({path})")
    return path


def check_fits(name: str, path: str | Path, where: str) -> None:
    """Raise CheckpointError unless the file or folder loads strictly into zoo model `name`.

    The model is built on the meta device: the strict check compares every key and shape, which needs no
    weights, so even ViTPose-H is checked in a moment and without its memory.
    """
    with torch.device("meta"):
        model = zoo.build(name)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter")
        load_checkpoint(model, path, where=where)
