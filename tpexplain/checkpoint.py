"""Loading checkpoints: one function for every family. Untrusted files are read with weights_only=True."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


_WRAPPERS = ("state_dict", "model", "best_state_dict", "module")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, unwrapped from the usual containers and `module.` prefixes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zips, non-tensor objects refused by weights_only
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    return unwrap_state_dict(obj, str(path))


def unwrap_state_dict(obj, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Strip `{'state_dict': ...}`-style wrappers and DataParallel's `module.` prefix."""
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{where} holds no state dict of tensors")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def compare(model_shapes: dict[str, tuple], state: dict[str, torch.Tensor]) -> tuple[list, list, list]:
    """(missing, unexpected, mis-shaped) keys of `state` against a model's key → shape map."""
    missing = [k for k in model_shapes if k not in state]
    unexpected = [k for k in state if k not in model_shapes]
    misshaped = [(k, tuple(state[k].shape), tuple(model_shapes[k])) for k in state
                 if k in model_shapes and tuple(state[k].shape) != tuple(model_shapes[k])]
    return missing, unexpected, misshaped


def closest_zoo_model(state: dict[str, torch.Tensor]) -> tuple[str, float] | None:
    """The zoo model whose key/shape layout the state dict matches best, with the matching fraction."""
    from . import zoo
    best = None
    for name in zoo.manifest():
        try:
            with torch.device("meta"):
                shapes = {k: tuple(v.shape) for k, v in zoo.build(name).state_dict().items()}
        except Exception:
            continue
        same = sum(1 for k, v in state.items() if shapes.get(k) == tuple(v.shape))
        score = same / max(len(shapes), len(state))
        if best is None or score > best[1]:
            best = (name, score)
    return best


def load_into(model: nn.Module, state: dict[str, torch.Tensor], where: str = "checkpoint") -> nn.Module:
    """load_state_dict(strict=True), with an error that says which keys do not fit and what it resembles."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected, misshaped = compare(shapes, state)
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if misshaped:
            k, got, want = misshaped[0]
            parts.append(f"{len(misshaped)} mis-shaped (e.g. {k}: {list(got)} vs model {list(want)})")
        close = closest_zoo_model(state)
        hint = f"; it most resembles zoo model '{close[0]}' ({close[1]:.0%} of keys fit)" if close else ""
        name = getattr(model, "zoo_name", type(model).__name__)
        raise CheckpointError(f"{where} does not fit '{name}': {'; '.join(parts)}{hint}")
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint file into `model` strictly (plain, `state_dict`-wrapped or `module.`-prefixed)."""
    return load_into(model, read_state_dict(path), where=str(path))
