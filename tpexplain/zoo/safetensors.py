"""A small reader and writer for the safetensors format, so Hugging Face checkpoints load without pickle
and without a new dependency.

Layout: 8 bytes little-endian header length n, n bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]},
optional "__metadata__": {str: str}}, then the raw little-endian tensor bytes (offsets relative to the end of
the header).
"""
from __future__ import annotations

import json
import math
import os
import struct
import sys
from pathlib import Path

import torch

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E5M2": torch.float8_e5m2, "F8_E4M3": torch.float8_e4m3fn,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8, "BOOL": torch.bool,
}
NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100_000_000   # as the reference implementation: refuse absurd headers before reading them
_USIZE = 2**64


class SafetensorsError(ValueError):
    """A file that is not a well-formed safetensors file."""


def load_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a .safetensors file, on the CPU, in file order.

    The header is checked by the reference implementation's rules (the Rust `safetensors` crate's `validate`)
    before any data is read: UTF-8 JSON object starting with "{", "__metadata__" a map of strings to strings,
    each tensor a known dtype, a shape of non-negative integers and two integer data_offsets; sorted by
    offset the tensors tile the data exactly (no gap, no overlap, nothing after the last), and each one's
    byte length is its shape's element count times its dtype's size. Any problem is a SafetensorsError.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError("file too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise SafetensorsError(f"header length {n:,} is over the limit ({MAX_HEADER:,} bytes)")
        if 8 + n > size:
            raise SafetensorsError(f"header length {n:,} does not fit the file ({size:,} bytes)")
        entries = _parse_header(f.read(n), size - 8 - n)
        out: dict[str, torch.Tensor] = {}
        for name, dtype, shape, begin, end in entries:
            f.seek(8 + n + begin)
            buf = bytearray(f.read(end - begin))   # writable, so the tensor owns its memory
            if len(buf) != end - begin:
                raise SafetensorsError(f"{name}: file ended inside its data")
            t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
            itemsize = t.element_size()
            if sys.byteorder == "big" and itemsize > 1:
                t = t.view(torch.uint8).view(-1, itemsize).flip(1).reshape(-1).view(dtype)
            out[name] = t.reshape(shape)
    return out


def _parse_header(raw: bytes, data_size: int) -> list[tuple[str, torch.dtype, list[int], int, int]]:
    """(name, dtype, shape, begin, end) per tensor, sorted by offset, after every check of the header."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SafetensorsError("header is not UTF-8") from None
    if not text.startswith("{"):
        raise SafetensorsError("header does not start with '{'")
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise SafetensorsError(f"header is not valid JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise SafetensorsError("__metadata__ is not a map of strings to strings")
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise SafetensorsError(f"{name}: tensor info is not an object")
        dtype = DTYPES.get(info.get("dtype")) if isinstance(info.get("dtype"), str) else None
        if dtype is None:
            raise SafetensorsError(f"{name}: unsupported dtype {str(info.get('dtype'))[:40]!r}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(_is_usize(s) for s in shape)):
            raise SafetensorsError(f"{name}: shape is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_usize(v) for v in offsets)):
            raise SafetensorsError(f"{name}: data_offsets is not two non-negative integers")
        entries.append((name, dtype, shape, offsets[0], offsets[1]))
    entries.sort(key=lambda e: (e[3], e[4]))
    start = 0
    for name, dtype, shape, begin, end in entries:
        if begin != start or end < begin:
            raise SafetensorsError(f"{name}: data_offsets [{begin}, {end}] leave a gap or overlap another tensor")
        numel = math.prod(shape)
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        if nbytes >= _USIZE:
            raise SafetensorsError(f"{name}: shape {shape} overflows")
        if nbytes != end - begin:
            raise SafetensorsError(f"{name}: {end - begin:,} bytes for shape {shape} of {NAMES[dtype]}")
        start = end
    if start != data_size:
        raise SafetensorsError(f"the tensors cover {start:,} bytes of the {data_size:,}-byte data buffer")
    return entries


def _is_usize(v) -> bool:
    return type(v) is int and 0 <= v < _USIZE


def _no_duplicates(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)[:40]!r}")
    return dict(pairs)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as a .safetensors file (what Hugging Face `save_pretrained` writes)."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    blobs, offset = [], 0
    for name, t in tensors.items():
        if t.dtype not in NAMES:
            raise SafetensorsError(f"{name}: dtype {t.dtype} has no safetensors name")
        data = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        if sys.byteorder == "big" and t.element_size() > 1:
            data = data.view(-1, t.element_size()).flip(1).reshape(-1)
        blob = data.numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)   # pad so the data starts 8-byte aligned, as the reference writer does
    path = Path(path)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    return path
