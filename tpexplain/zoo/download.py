"""`tpexplain download`: fetch an official checkpoint, check its hash and that it loads."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from . import registry as zoo
from .checkpoint import load_into, read_state_dict


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_checkpoint(name: str, url: str | None = None, folder: str | Path | None = None,
                        force: bool = False, sha: str | None = None, timeout: float = 30.0, log=print) -> Path:
    """Download zoo model `name`'s checkpoint; verify sha256 (when known) and that it loads strictly."""
    e = zoo.entry(name)
    url = url or e.get("url")
    if not url:
        raise ValueError(f"'{name}' has no download address; its checkpoint ships with tpexplain or is built by "
                         f"`tpexplain train`")
    folder = Path(folder) if folder else zoo.checkpoints_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / e["checkpoint"]
    if dest.exists() and not force:
        log(f"{dest} already present")
        return dest
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=folder)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, os.fdopen(fd, "wb") as f:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                while block := resp.read(1 << 20):
                    f.write(block)
                    done += len(block)
                log(f"downloaded {done / 2**20:.1f} MiB" + (f" of {total / 2**20:.1f}" if total else ""))
        except OSError as exc:
            reason = getattr(exc, "reason", exc)
            raise ValueError(f"cannot download {url}: {reason} (no network? copy {e['checkpoint']} into "
                             f"{folder} by hand)") from None
        expected = (sha or e.get("sha256") or "").lower()
        if expected and sha256(tmp) != expected:
            raise ValueError(f"sha256 mismatch for {url}: the file is corrupt or not the official one")
        load_into(zoo.build(name), read_state_dict(tmp), where=f"downloaded file for '{name}'")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
