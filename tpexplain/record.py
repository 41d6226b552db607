"""Recording every encoder layer's attention during the forward pass that makes the prediction.

    with record_attention(model) as maps:
        heatmaps = model(x)
    maps[-1].rows([q])        # (B, H, 1, N) post-softmax probabilities of query q in the last layer

Modes:
- "full":  the per-head probabilities (B, H, N, N), computed explicitly; they are the tensor that
           multiplies V, so with autograd on they carry gradients.
- "mean":  the head mean only, stored in `dtype` (e.g. float16): a compact full map.
- "qk":    the layer's own queries, keys and softmax scale (O(N·d) memory, not O(N²)); the forward keeps the
           fused kernel, and any row, column or full map is evaluated exactly on demand. The right
           mode for 3072-token models and for batches.
Our models compute attention through `tpexplain.models.layers.attend`; for any other model, every
`nn.MultiheadAttention` is recorded through a pre-hook that asks it for per-head weights. Nothing stays
attached after the `with` block.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .models.layers import RecordableAttention, explicit_attention, fused_attention

MODES = ("full", "mean", "qk")


class LayerAttention:
    """One layer's attention for a batch: per-head probabilities, their head mean, or q/k to evaluate."""

    def __init__(self, probs: torch.Tensor | None = None, q: torch.Tensor | None = None,
                 k: torch.Tensor | None = None, heads_averaged: bool = False, scale: float = 1.0):
        self.probs, self.q, self.k, self.scale = probs, q, k, scale   # softmax(q kᵀ · scale)
        self.heads_averaged = heads_averaged
        self._lse: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(batch, heads, tokens); heads is 1 when only the head mean was kept."""
        t = self.probs if self.probs is not None else self.q
        return t.shape[0], t.shape[1], t.shape[2]

    def _logits(self, rows: torch.Tensor | slice) -> torch.Tensor:
        return (self.q[:, :, rows].float() @ self.k.float().transpose(-2, -1)) * self.scale

    def rows(self, index: torch.Tensor | list[int] | slice = slice(None)) -> torch.Tensor:
        """Attention of the given queries to every key: (B, H, len(index), N), each row sums to 1."""
        index = _as_index(index)
        if self.probs is not None:
            return self.probs[:, :, index].float()
        return torch.softmax(self._logits(index), dim=-1)

    def columns(self, index: torch.Tensor | list[int] | slice = slice(None)) -> torch.Tensor:
        """Attention every query pays to the given keys: (B, H, N, len(index))."""
        index = _as_index(index)
        if self.probs is not None:
            return self.probs[..., index].float()
        lse = self._row_logsumexp()
        logits = (self.q.float() @ self.k[:, :, index].float().transpose(-2, -1)) * self.scale
        return torch.exp(logits - lse[..., None])

    def full(self) -> torch.Tensor:
        """The whole (B, H, N, N) map (for "qk" mode this materialises N² values per head)."""
        return self.rows(slice(None))

    def head_mean(self) -> "LayerAttention":
        if self.heads_averaged or self.shape[1] == 1:
            return self
        return LayerAttention(probs=self.full().mean(1, keepdim=True), heads_averaged=True)

    def select(self, batch_index: int) -> "LayerAttention":
        """The same layer for one image of the batch."""
        s = slice(batch_index, batch_index + 1)
        if self.probs is not None:
            return LayerAttention(probs=self.probs[s], heads_averaged=self.heads_averaged)
        return LayerAttention(q=self.q[s], k=self.k[s], scale=self.scale)

    def to(self, device: torch.device | str) -> "LayerAttention":
        """The same layer with its tensors on `device` (a copy only when they are elsewhere)."""
        if self.probs is not None:
            return LayerAttention(probs=self.probs.to(device), heads_averaged=self.heads_averaged)
        return LayerAttention(q=self.q.to(device), k=self.k.to(device), scale=self.scale)

    def _row_logsumexp(self, chunk: int = 512) -> torch.Tensor:
        # chunked so a 3072-token column never materialises the full N×N map at once
        if self._lse is None:
            n = self.q.shape[2]
            self._lse = torch.cat([torch.logsumexp(self._logits(slice(i, i + chunk)), dim=-1)
                                   for i in range(0, n, chunk)], dim=-1)
        return self._lse

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.probs, self.q, self.k) if t is not None)


def _as_index(index) -> torch.Tensor | slice:
    if isinstance(index, slice):
        return index
    return torch.as_tensor(index, dtype=torch.long).reshape(-1)


class _Sink:
    """Attached to one of our attention modules while recording."""

    def __init__(self, out: list[LayerAttention], mode: str, dtype: torch.dtype | None):
        self.out, self.mode, self.dtype = out, mode, dtype

    def attend(self, module: RecordableAttention, q, k, v, scale):
        if self.mode == "qk":
            # references to tensors the layer computes anyway: recording costs no arithmetic here
            self.out.append(LayerAttention(q=_keep(q, self.dtype), k=_keep(k, self.dtype), scale=scale))
            return fused_attention(module, q, k, v, scale)
        output, probs = explicit_attention(module, q, k, v, scale)
        if self.mode == "mean":
            self.out.append(LayerAttention(probs=_keep(probs.mean(1, keepdim=True), self.dtype),
                                           heads_averaged=True))
        else:
            self.out.append(LayerAttention(probs=probs if self.dtype is None else probs.to(self.dtype)))
        return output


def _keep(t: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    t = t.detach()
    return t if dtype is None else t.to(dtype)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose attention is recorded, in forward order for sequential encoders."""
    ours = [m for m in model.modules() if isinstance(m, RecordableAttention)]
    return ours or [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]


@contextlib.contextmanager
def record_attention(model: nn.Module, mode: str = "full",
                     dtype: torch.dtype | None = None) -> Iterator[list[LayerAttention]]:
    """Record the attention of every layer of `model` for the forward passes inside the block.

    Yields a list that fills with one `LayerAttention` per attention call, in call order.
    """
    if mode not in MODES:
        raise ValueError(f"unknown recording mode '{mode}'; use one of {', '.join(MODES)}")
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no attention module that tpexplain can record")
    out: list[LayerAttention] = []
    handles = []
    try:
        for m in modules:
            if isinstance(m, RecordableAttention):
                m.attention_sink = _Sink(out, mode, dtype)
            else:
                handles += _hook_multihead(m, out, mode, dtype)
        yield out
    finally:
        for m in modules:
            if isinstance(m, RecordableAttention):
                m.__dict__.pop("attention_sink", None)
        for h in handles:
            h.remove()


def _hook_multihead(m: nn.MultiheadAttention, out: list, mode: str, dtype) -> list:
    """Foreign `nn.MultiheadAttention`: ask for per-head weights, read them from the output."""
    def pre(module, args, kwargs):
        kwargs = dict(kwargs, need_weights=True, average_attn_weights=False)
        return args, kwargs

    def post(module, args, kwargs, output):
        w = output[1]
        probs = w.mean(1, keepdim=True) if mode == "mean" else w
        out.append(LayerAttention(probs=_keep(probs, dtype), heads_averaged=mode == "mean"))

    return [m.register_forward_pre_hook(pre, with_kwargs=True),
            m.register_forward_hook(post, with_kwargs=True)]
