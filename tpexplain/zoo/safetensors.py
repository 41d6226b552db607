"""A small reader and writer for the safetensors format, so Hugging Face checkpoints load without pickle
and without a new dependency.

Layout: 8 bytes little-endian header length n, n bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]},
optional "__metadata__": {str: str}}, then the raw little-endian tensor bytes (offsets relative to the end of
the header).
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import torch

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 2**20   # as the reference implementation: refuse absurd headers before reading them


class SafetensorsError(ValueError):
    """A file that is not a well-formed safetensors file."""


def load_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a .safetensors file, on the CPU, in file order."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError("file too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER, size - 8):
            raise SafetensorsError(f"header length {n} does not fit the file ({size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SafetensorsError(f"header is not JSON: {exc}") from None
        if not isinstance(header, dict):
            raise SafetensorsError("header is not a JSON object")
        header.pop("__metadata__", None)
        data_size = size - 8 - n
        entries = sorted(header.items(), key=lambda kv: _offsets(kv[0], kv[1], data_size)[0])
        out: dict[str, torch.Tensor] = {}
        for name, info in entries:
            begin, end = _offsets(name, info, data_size)
            dtype = DTYPES.get(info.get("dtype"))
            if dtype is None:
                raise SafetensorsError(f"{name}: unsupported dtype {info.get('dtype')!r}")
            shape = [int(s) for s in info.get("shape", [])]
            numel = 1
            for s in shape:
                numel *= s
            itemsize = torch.empty((), dtype=dtype).element_size()
            if numel * itemsize != end - begin:
                raise SafetensorsError(f"{name}: {end - begin} bytes for shape {shape} of {info['dtype']}")
            f.seek(8 + n + begin)
            buf = bytearray(f.read(end - begin))   # writable, so the tensor owns its memory
            t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
            if sys.byteorder == "big" and itemsize > 1:
                t = t.view(torch.uint8).view(-1, itemsize).flip(1).reshape(-1).view(dtype)
            out[name] = t.reshape(shape)
    return out


def _offsets(name: str, info, data_size: int) -> tuple[int, int]:
    try:
        begin, end = (int(v) for v in info["data_offsets"])
    except (TypeError, KeyError, ValueError):
        raise SafetensorsError(f"{name}: missing or bad data_offsets") from None
    if not 0 <= begin <= end <= data_size:
        raise SafetensorsError(f"{name}: data_offsets [{begin}, {end}] outside the data ({data_size} bytes)")
    return begin, end


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
