"""The model zoo: `models/manifest.json` (names → architecture, config, checkpoint) and the builders."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from torch import nn

from .models.tokenpose import TokenPose
from .models.transpose import TransPoseH, TransPoseR
from .models.vitpose import ViTPose

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "transpose_r": TransPoseR,
    "transpose_h": TransPoseH,
    "tokenpose": TokenPose,
    "vitpose": ViTPose,
}


def models_dir() -> Path:
    """Where the manifest and checkpoints live: $TPEXPLAIN_MODELS, else the repository's `models/`."""
    env = os.environ.get("TPEXPLAIN_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


@lru_cache(maxsize=None)
def _manifest(path: str) -> dict:
    return json.loads(Path(path).read_text())


def manifest() -> dict[str, dict]:
    """Every known model, by zoo name."""
    return _manifest(str(models_dir() / "manifest.json"))


def entry(name: str) -> dict:
    """The manifest entry of a zoo name (case-insensitive); unknown names list the known ones."""
    zoo = manifest()
    key = name.strip().lower()
    if key not in zoo:
        import difflib
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


def checkpoint_path(name: str) -> Path | None:
    """The model's checkpoint in the models folder, if it is there."""
    e = entry(name)
    if not e.get("checkpoint"):
        return None
    path = models_dir() / e["checkpoint"]
    return path if path.exists() else None
