"""The one place where every model family computes attention.

Each attention module of our models calls `attend(self, q, k, v, scale)`. With nothing recording it takes
the fused kernel (SDPA), so there is no cost when not recording. A recorder sets `module.attention_sink`
for the duration of a forward pass; the sink then computes attention in a form it can keep. This avoids
hooks entirely: a fused kernel can never silently skip a hook, and the recorded probabilities are the
ones that multiply V (so they carry gradients when asked to).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RecordableAttention(nn.Module):
    """Base of every attention module that `tpexplain.record` can read."""

    attention_sink = None  # set on the instance only while recording
    attn_dropout: float = 0.0


def attend(module: RecordableAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v over (B, H, N, d) tensors, recorded if a sink is attached."""
    sink = module.attention_sink
    if sink is not None:
        return sink.attend(module, q, k, v, scale)
    return fused_attention(module, q, k, v, scale)


def fused_attention(module: RecordableAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    scale: float) -> torch.Tensor:
    """The fast path: PyTorch's fused kernel, which never materialises the probabilities."""
    p = module.attn_dropout if module.training else 0.0
    return F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=scale)


def explicit_attention(module: RecordableAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The same computation written out, returning (output, post-softmax probabilities)."""
    probs = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
    dropped = F.dropout(probs, module.attn_dropout, module.training) if module.attn_dropout else probs
    return dropped @ v, probs
