"""The model zoo's registry: names → architecture, config and checkpoint, and where checkpoints are found."""
from __future__ import annotations

import difflib
import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

from torch import nn

from ..keypoints import COCO_KEYPOINTS
from ..models.tokenpose import TokenPose
from ..models.transpose import TransPoseH, TransPoseR
from ..models.vitpose import ViTPose

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "transpose_r": TransPoseR,
    "transpose_h": TransPoseH,
    "tokenpose": TokenPose,
    "vitpose": ViTPose,
}


def _package_file(name: str) -> Path:
    # the package is always installed as files (zip_safe = False), so a real path exists
    return Path(str(resources.files(__package__).joinpath(name)))


def bundled_dir() -> Path:
    """The checkpoints that ship inside the package (the default model)."""
    return _package_file("weights")


def cache_dir() -> Path:
    """Where downloaded checkpoints go: $TPEXPLAIN_HOME, else the user's cache folder (~/.cache/tpexplain)."""
    env = os.environ.get("TPEXPLAIN_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tpexplain"


def checkpoints_dir() -> Path:
    """The folder of downloaded checkpoints inside the cache (created on first download)."""
    return cache_dir() / "checkpoints"


def search_dirs() -> list[Path]:
    """Folders searched for a zoo checkpoint, in order: the package, the cache, then $TPEXPLAIN_MODELS."""
    dirs = [bundled_dir(), checkpoints_dir()]
    extra = os.environ.get("TPEXPLAIN_MODELS")
    if extra:
        dirs += [Path(p).expanduser() for p in extra.split(os.pathsep) if p]
    return dirs


@lru_cache(maxsize=None)
def manifest() -> dict[str, dict]:
    """Every known model, by zoo name (the package's manifest.json)."""
    return json.loads(_package_file("manifest.json").read_text(encoding="utf-8"))


def entry(name: str) -> dict:
    """The manifest entry of a zoo name (case-insensitive); unknown names list the known ones."""
    zoo = manifest()
    key = name.strip().lower()
    if key not in zoo:
        close = difflib.get_close_matches(key, list(zoo), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model '{name}'{hint} (known: {', '.join(zoo)})")
    return zoo[key]


def build(name: str) -> nn.Module:
    """A zoo model with freshly initialised weights."""
    e = entry(name)
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in e.get("config", {}).items()}
    model = ARCHITECTURES[e["arch"]](**config, image_size=tuple(e.get("input_size", (256, 192))))
    model.zoo_name = name.strip().lower()
    return model


def keypoint_names(name: str) -> tuple[str, ...]:
    """The keypoints a zoo model predicts, without loading any weights (built on the meta device)."""
    import torch
    with torch.device("meta"):
        return tuple(getattr(build(name), "keypoint_names", COCO_KEYPOINTS))


def checkpoint_path(name: str) -> Path | None:
    """The model's checkpoint file or Hugging Face folder, if present in a searched folder."""
    e = entry(name)
    if not e.get("checkpoint"):
        return None
    for folder in search_dirs():
        path = folder / e["checkpoint"]
        if path.exists():
            return path
    if e.get("hf"):
        from .hub import cached_hf_folder
        return cached_hf_folder(e["hf"])
    return None


def missing_weights_message(name: str) -> str:
    """What to do when a zoo model's checkpoint is nowhere to be found."""
    e = entry(name)
    if e.get("hf"):
        how = f"`tpexplain download {name}` (from the Hugging Face Hub, needs `pip install \"tpexplain[hf]\"`)"
    elif e.get("url"):
        how = f"`tpexplain download {name}`"
    else:
        where = e.get("weights_page") or e.get("source", "see docs/model_zoo.md")
        how = f"get {e.get('checkpoint')} by hand ({where})"
    return (f"no weights for '{name}': {how}, put {e.get('checkpoint')} in {checkpoints_dir()}, "
            f"or pass --weights FILE")
