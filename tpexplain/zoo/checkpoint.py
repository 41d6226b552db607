"""Loading checkpoints: one function for every family. Untrusted files are read with weights_only=True."""
from __future__ import annotations

import json
import pickle
import re
import stat
from pathlib import Path

import torch
from torch import nn

from ..progress import one_line


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


_WRAPPERS = ("state_dict", "model", "best_state_dict", "module")
SAFETY = ("not loaded, for safety; re-save the state dict with the training code: "
          "torch.save(model.state_dict(), ...)")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, unwrapped from the usual containers and `module.` prefixes.

    `path` is a torch file (read with weights_only=True; numpy scalars in training metadata are allowed, nothing
    else), a .safetensors file, or a Hugging Face model folder (config.json + model.safetensors, possibly
    sharded); safetensors are read without pickle. Tensors holding NaN or inf are refused.
    """
    path = Path(path)
    if path.is_dir():
        state = _read_folder(path)
    elif not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    elif not path.is_file() or not stat.S_ISREG(path.stat().st_mode):
        # a FIFO would block the read, a device could stream forever: refuse before opening
        raise CheckpointError(f"checkpoint is not a regular file: {path}")
    elif _is_safetensors(path):
        state = _read_safetensors(path)
    else:
        state = unwrap_state_dict(_torch_load(path), str(path))
    check_finite(state, str(path))
    return state


def check_finite(state: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """Refuse a state dict with NaN or inf in a floating-point tensor (a diverged run), naming the tensors."""
    bad = [k for k, t in state.items()
           if (t.is_floating_point() or t.is_complex()) and t.device.type != "meta" and not torch.isfinite(t).all()]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3:,} more" if len(bad) > 3 else "")
        raise CheckpointError(f"{where} has NaN or infinite values in {len(bad):,} tensor(s) ({shown}): not loaded "
                              f"(a diverged training run?)")


# ---------------------------------------------------------------------------------------------------
# torch files: weights_only=True plus an allow-list of inert numpy types (training metadata: TokenPose's
# `perf`, mmcv's `best_score` are numpy floats). Only numeric dtypes are constructed, always as copies: a
# pickle that omits BUILD or passes copy=False cannot reach numpy's shared dtype singletons.

_NUMERIC_KINDS = "biuf"


def _dtype(obj, align=False, copy=True):
    d = _numpy().dtype(obj, bool(align), True)
    if d.kind not in _NUMERIC_KINDS or d.fields is not None or d.subdtype is not None:
        raise pickle.UnpicklingError(f"GLOBAL numpy.dtype[{d}] was not an allowed global by default.")
    return d


def _scalar(dtype, data=None):
    np = _numpy()
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or not isinstance(data, bytes):
        raise pickle.UnpicklingError("GLOBAL numpy scalar of a non-numeric type was not an allowed global by default.")
    return _multiarray().scalar(dtype, data)


def _reconstruct(cls, shape, dtype_code):
    np = _numpy()
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"GLOBAL {cls!r} was not an allowed global by default.")
    return _multiarray()._reconstruct(cls, shape, dtype_code)


def _numpy():
    import numpy
    return numpy


def _multiarray():
    np = _numpy()
    return np._core.multiarray if hasattr(np, "_core") else np.core.multiarray


def _safe_globals() -> list:
    np = _numpy()
    allowed: list = []
    for core in ("numpy._core.multiarray", "numpy.core.multiarray"):   # numpy 2 and numpy 1 pickles
        allowed += [(_scalar, f"{core}.scalar"), (_reconstruct, f"{core}._reconstruct")]
    allowed += [(_dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray")]
    for name in ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
                 "Float16", "Float32", "Float64"):
        cls = getattr(np.dtypes, f"{name}DType")
        allowed.append((cls, f"numpy.dtypes.{name}DType"))
    return allowed


def _torch_load(path: Path):
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _offending_type(path, str(exc))
        if found is None:   # not a pickle at all, or a damaged one
            raise CheckpointError(f"cannot read checkpoint {path}: not a torch checkpoint "
                                  f"({_unpickler_reason(str(exc))})") from None
        raise CheckpointError(f"cannot read checkpoint {path}: it contains a Python object of type {found}; "
                              f"{SAFETY}") from None
    except Exception as exc:  # truncated zips, not a torch file at all, legacy formats
        raise CheckpointError(f"cannot read checkpoint {path}: {_first_line(exc)}") from None


def _unpickler_reason(message: str) -> str:
    # torch's text around the unpickler's own words advises weights_only=False: keep only the latter
    reason = message.split("WeightsUnpickler error:")[-1].strip().splitlines()
    reason = reason[0] if reason else "unreadable"
    return reason[:120] if "weights_only" not in reason else "unreadable"


def _offending_type(path: Path, message: str) -> str | None:
    """The global a refused pickle asked for, in the unpickler's words or by reading the pickle statically."""
    found = None
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            found = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:   # not a zip checkpoint: fall back to the message
        pass
    if found:
        return ", ".join(found[:3]) + (f" (and {len(found) - 3} more)" if len(found) > 3 else "")
    for pattern in (r"GLOBAL (\S+) was not an allowed", r"unsupported GLOBAL (\S+) whose",
                    r"unrecognized function (.+?)(?: which|$)", r"but got (<class [^>]+>)"):
        m = re.search(pattern, message, flags=re.M)
        if m:
            return m[1]
    return None


def _first_line(exc: BaseException) -> str:
    line = one_line(exc)
    # never pass on torch's advice to unpickle without restrictions
    return line if "weights_only" not in line else type(exc).__name__


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
        return _read_shards(folder, index)
    raise CheckpointError(f"{folder} is a folder without model.safetensors: expected a Hugging Face model "
                          f"folder (config.json + model.safetensors) or a checkpoint file")


def _read_shards(folder: Path, index: Path) -> dict[str, torch.Tensor]:
    """The shards of a sharded folder: plain file names inside the folder, holding exactly what the index says."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CheckpointError(f"cannot read {index}: {_first_line(exc)}") from None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"cannot read {index}: weight_map is not a non-empty map of tensor → file names")
    root = folder.resolve()
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        path = folder / shard
        if (Path(shard).is_absolute() or "\\" in shard or len(Path(shard).parts) != 1 or shard in (".", "..")
                or path.resolve().parent != root):
            raise CheckpointError(f"{index} names shard '{shard}' outside its folder: refused")
        if not path.is_file():
            raise CheckpointError(f"{index} names shard '{shard}', which is not in {folder}")
        tensors = _read_safetensors(path)
        listed = {k for k, v in weight_map.items() if v == shard}
        if set(tensors) != listed:
            odd = sorted(set(tensors) ^ listed)
            raise CheckpointError(f"{path} does not hold what {index.name} lists for it ({len(odd)} tensor(s) "
                                  f"differ, e.g. {odd[0]})")
        state.update(tensors)
    return state


def read_hf_config(folder: Path) -> dict | None:
    """A Hugging Face folder's config.json as a dict (None when the folder has none)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"cannot read {path}: {_first_line(exc)}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"cannot read {path}: not a JSON object")
    return config


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
    if all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    if not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"{where} holds a state dict whose keys are not all names")
    return obj


def compare(model_shapes: dict[str, tuple], state: dict[str, torch.Tensor]) -> tuple[list, list, list]:
    """(missing, unexpected, mis-shaped) keys of `state` against a model's key → shape map."""
    missing = [k for k in model_shapes if k not in state]
    unexpected = [k for k in state if k not in model_shapes]
    misshaped = [(k, tuple(state[k].shape), tuple(model_shapes[k])) for k in state
                 if k in model_shapes and tuple(state[k].shape) != tuple(model_shapes[k])]
    return missing, unexpected, misshaped


def closest_zoo_model(state: dict[str, torch.Tensor]) -> tuple[str, int, int] | None:
    """The zoo model whose key/shape layout the state dict matches best: (name, keys that fit, keys compared)."""
    from . import registry as zoo
    best = None
    for name in zoo.manifest():
        try:
            with torch.device("meta"):
                shapes = {k: tuple(v.shape) for k, v in zoo.build(name).state_dict().items()}
        except Exception:
            continue
        same = sum(1 for k, v in state.items() if shapes.get(k) == tuple(v.shape))
        total = max(len(shapes), len(state))
        if best is None or same / total > best[1] / best[2]:
            best = (name, same, total)
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
        # exact counts: a rounded percentage calls 1,198 of 1,202 "100%"
        hint = f"; it most resembles zoo model '{close[0]}' ({close[1]:,} of {close[2]:,} keys fit)" if close else ""
        name = getattr(model, "zoo_name", type(model).__name__)
        raise CheckpointError(f"{where} does not fit '{name}': {'; '.join(parts)}{hint}")
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(model: nn.Module, path: str | Path, where: str | None = None) -> nn.Module:
    """Load a checkpoint file or Hugging Face folder into `model` strictly.

    A folder's config.json must describe the model it is loaded into (the family's `apply_hf_config` says
    what it can take from it, e.g. ViTPose's LayerNorm eps, and refuses the rest naming the field).
    """
    path = Path(path)
    apply = getattr(model, "apply_hf_config", None)
    if path.is_dir() and apply is not None:
        config = read_hf_config(path)
        if config is not None:
            try:
                apply(config)
            except ValueError as exc:
                raise CheckpointError(f"{where or path}: config.json: {exc}") from None
    return load_into(model, read_state_dict(path), where=where or str(path))
