"""ViTPose checkpoints from the Hugging Face Hub (the optional `huggingface_hub` extra)."""
from __future__ import annotations

from pathlib import Path


def cached_hf_folder(repo_id: str) -> Path | None:
    """The local snapshot folder of a Hub repository if it is already in the Hugging Face cache."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError) or an unreadable cache: treat as absent
        return None
