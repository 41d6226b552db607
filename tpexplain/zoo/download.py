"""`tpexplain download`: fetch an official checkpoint into the per-user cache, check its hash and that it loads."""
from __future__ import annotations

import hashlib
import http.client
import logging
import re
import sys
import urllib.error
import warnings
from pathlib import Path

import torch

from ..io import atomic_path
from . import hub
from . import registry as zoo
from .checkpoint import load_into, read_state_dict

logger = logging.getLogger(__name__)


def sha256(path: str | Path) -> str:
    """The hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_checkpoint(name: str, url: str | None = None, folder: str | Path | None = None,
                        force: bool = False, sha: str | None = None) -> Path:
    """Download zoo model `name`'s checkpoint and check that it loads strictly; the path of the file or folder.

    A file (the manifest's "url", or `url`) goes to `zoo.checkpoints_dir()` ($TPEXPLAIN_HOME/checkpoints, else
    ~/.cache/tpexplain/checkpoints) or `folder`; its sha256 is checked when the manifest or `sha` gives one,
    and it appears there only once every check has passed. A model on the Hugging Face Hub (the manifest's
    "hf") is fetched into Hugging Face's own cache (or `folder`). A model with neither is an error that says
    where to get the file by hand. Errors are one-line ValueErrors (CheckpointError for a file that does not
    fit). Messages go to the "tpexplain" logger.
    """
    e = zoo.entry(name)
    url = url or e.get("url")
    if url:
        return _download_file(name, e, url, folder, force, sha)
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


def _download_file(name: str, e: dict, url: str, folder, force: bool, sha: str | None) -> Path:
    folder = Path(folder).expanduser() if folder else zoo.checkpoints_dir()
    dest = folder / e["checkpoint"]
    if dest.exists() and not force:
        logger.info(f"{dest} already present")
        return dest
    expected = (sha or e.get("sha256") or "").strip().lower()
    if expected and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ValueError(f"bad sha256 '{sha}': expected 64 hex digits")
    folder.mkdir(parents=True, exist_ok=True)
    # torch.hub writes its own partial file beside `tmp` and moves it there only if the hash matched; `tmp`
    # replaces `dest` only once the file also loads strictly; on any failure both are removed
    with atomic_path(dest) as tmp:
        try:
            torch.hub.download_url_to_file(url, str(tmp), hash_prefix=expected or None,
                                           progress=sys.stderr.isatty())
        except RuntimeError as exc:
            if "invalid hash value" not in str(exc):
                raise
            raise ValueError(f"sha256 mismatch for {url}: the file is corrupt or not the official one "
                             f"(expected {expected[:12]}…)") from None
        except urllib.error.HTTPError as exc:
            raise ValueError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:  # no network, refused, truncated, bad URL
            reason = getattr(exc, "reason", None) or exc
            raise ValueError(f"cannot download {url}: {reason} (no network? copy {e['checkpoint']} into "
                             f"{folder} by hand)") from None
        check_fits(name, tmp, where=f"downloaded file for '{name}' ({url})")
    logger.info(f"saved {dest}")
    return dest


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
        load_into(model, read_state_dict(path), where=where)
