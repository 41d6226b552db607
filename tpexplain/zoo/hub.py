"""ViTPose checkpoints from the Hugging Face Hub (the optional `huggingface_hub` extra), kept in HF's own cache."""
from __future__ import annotations

import sys
from pathlib import Path

from ..progress import one_line

# A `VitPoseForPoseEstimation` folder needs config.json and the safetensors (single or sharded with their
# index); the repos' README and preprocessor config are not needed. Downloads and cache look-ups must use the
# same patterns: the Hub library calls a cached snapshot incomplete if a file its patterns ask for is missing.
HF_FILES = ["*.json", "*.safetensors"]
INSTALL_HINT = 'pip install "tpexplain[hf]"'


def cached_hf_folder(repo_id: str) -> Path | None:
    """The local snapshot folder of a Hub repository if it is already in the Hugging Face cache."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HF_FILES, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError) or an unreadable cache: treat as absent
        return None


def download_hf_folder(repo_id: str, local_dir: str | Path | None = None, force: bool = False) -> Path:
    """Fetch a Hub repository's model files; the folder they are in (a snapshot in HF's cache, or `local_dir`).

    The Hub library's own environment applies: HF_HOME / HF_HUB_CACHE (where the cache is), HF_ENDPOINT (a
    mirror), HF_HUB_OFFLINE (cache only), HF_TOKEN, HF_HUB_DISABLE_PROGRESS_BARS. Every failure is a
    one-line ValueError.
    """
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:
        raise ValueError(f"downloading {repo_id} from the Hugging Face Hub needs huggingface_hub: "
                         f"{INSTALL_HINT}") from None
    where = f"the Hugging Face Hub ({constants.ENDPOINT})"
    try:
        folder = snapshot_download(repo_id, allow_patterns=HF_FILES, local_dir=local_dir, force_download=force,
                                   tqdm_class=None if sys.stderr.isatty() else _quiet_bar())
    except LocalEntryNotFoundError as exc:
        if constants.HF_HUB_OFFLINE:
            raise ValueError(f"HF_HUB_OFFLINE is set and {repo_id} is not (completely) in the Hugging Face cache "
                             f"({constants.HF_HUB_CACHE}): unset it to download") from None
        raise ValueError(f"cannot download {repo_id} from {where}: {_first_line(exc.__cause__ or exc)} (no "
                         f"network? set HF_ENDPOINT for a mirror, or fetch the folder by hand and pass "
                         f"--weights FOLDER)") from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ValueError(f"{repo_id} is not on {where}: {_first_line(exc)}") from None
    except Exception as exc:  # HTTP errors, and the transport library's own (not OSError for httpx)
        raise ValueError(f"cannot download {repo_id} from {where}: {_first_line(exc)}") from None
    return Path(folder)


def _quiet_bar():
    # the Hub library draws its files bar even into a log file; off the terminal, no bars at all
    from huggingface_hub.utils import tqdm

    class QuietBar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})

    return QuietBar


def _first_line(exc: BaseException) -> str:
    # the hub library's exception types say what went wrong (RepositoryNotFoundError, ...): keep them
    line = one_line(exc)
    return line if line == type(exc).__name__ else f"{type(exc).__name__}: {line}"
