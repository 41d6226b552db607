"""Loading checkpoints: one function for every family. Untrusted files are read with weights_only=True."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


_WRAPPERS = ("state_dict", "model", "best_state_dict", "module")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, unwrapped from the usual containers and `module.` prefixes.

    `path` is a torch file (read with weights_only=True), a .safetensors file, or a Hugging Face model
    folder (config.json + model.safetensors, possibly sharded); safetensors are read without pickle.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if _is_safetensors(path):
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated zips, non-tensor objects refused by weights_only
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    return unwrap_state_dict(obj, str(path))


def _is_safetensors(path: Path) -> bool:
    # sniffed, not judged by the suffix: an 8-byte length then a JSON object (a torch file starts with "PK")
    with open(path, "rb") as f:
        head = f.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from .safetensors import SafetensorsError, load_file
    try:
        state = load_file(path)
    except (OSError, SafetensorsError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if not state:
        raise CheckpointError(f"{path} holds no tensors")
    return unwrap_state_dict(state, str(path))


def _read_folder(folder: Path) -> dict[str, torch.Tensor]:
    """A Hugging Face `save_pretrained` folder: model.safetensors, or the shards its index names."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return _read_safetensors(single)
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"cannot read {index}: {exc}") from None
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_read_safetensors(folder / shard))
        return state
    raise CheckpointError(f"{folder} is a folder without model.safetensors: expected a Hugging Face model "
                          f"folder (config.json + model.safetensors) or a checkpoint file")


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
    from . import registry as zoo
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
    """load_state_dict(strict=True), with an error that says which keys do not fit and what it resembles.

    A model family whose released checkpoints need translating (other layouts, stray keys) says how in its
    own `adapt_state_dict(state)`, applied first.
    """
    adapt = getattr(type(model), "adapt_state_dict", None)
    if adapt is not None:
        try:
            state = adapt(state)
        except ValueError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
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
