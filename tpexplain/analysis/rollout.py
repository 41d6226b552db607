"""Attention rollout (Abnar & Zuidema, 2020): how much each input token reaches a query token through
every encoder layer, not just the last one.

Each layer's head-fused attention A_l becomes Â_l = (A_l + I) / 2 (the residual connection carries half
of the signal past the attention), rows renormalised; the joint map is Â_L ··· Â_1, and the keypoint's
rollout map is the row of its query token. Special tokens (TokenPose's keypoint tokens) take part in the
product, since information flows through them; only the visual tokens are laid out on the grid.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..explanation import AttentionMap, Explanation

HEAD_FUSIONS = ("mean", "max", "min")


def residual_attention(attention: torch.Tensor, residual: bool = True) -> torch.Tensor:
    """(N, N) attention with the identity mixed in (when `residual`), rows renormalised to sum to 1."""
    a = attention.double()
    if residual:
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    # head fusion by max/min breaks row-stochasticity; renormalising restores "shares of the input"
    return a / a.sum(-1, keepdim=True).clamp_min(1e-300)


def rollout_matrix(attentions: Sequence[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """The joint attention Â_L ··· Â_1 of per-layer (N, N) matrices given in forward order."""
    if not len(attentions):
        raise ValueError("rollout needs at least one attention layer")
    joint = None
    for a in attentions:
        a = residual_attention(a, residual)
        joint = a if joint is None else a @ joint
    return joint


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(H, N, N) per-head attention → (N, N)."""
    if head_fusion == "mean":
        return attention.mean(0)
    if head_fusion == "max":
        return attention.max(0).values
    if head_fusion == "min":
        return attention.min(0).values
    raise ValueError(f"unknown head fusion '{head_fusion}'; use one of {', '.join(HEAD_FUSIONS)}")


def rollout_rows(ex: Explanation, tokens: Sequence[int], residual: bool = True, head_fusion: str = "mean",
                 start_layer: int = 0) -> torch.Tensor:
    """Rows `tokens` of the rollout over layers start_layer..L-1 of `ex`: (len(tokens), N), special tokens first.

    Evaluated from the top layer down, carrying only the rows, so each layer's N×N map is built once and no
    identity matrix is materialised (3072-token models stay cheap).
    """
    n = ex.num_layers
    if not 0 <= start_layer < n:
        raise ValueError(f"start_layer {start_layer} out of range: the model has {n} encoder layers (0..{n - 1})")
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"unknown head fusion '{head_fusion}'; use one of {', '.join(HEAD_FUSIONS)}")
    rows = None
    for layer in range(n - 1, start_layer - 1, -1):
        a = fuse_heads(ex.attention[layer].full()[0].float(), head_fusion)
        if rows is None:
            rows = torch.zeros(len(tokens), a.shape[-1], dtype=a.dtype)
            rows[torch.arange(len(tokens)), torch.as_tensor(list(tokens), dtype=torch.long)] = 1.0
        # r · Â with Â = (A + I) / 2 row-normalised: scale r by Â's row normalisers, then r·A + r, halved
        d = a.sum(-1)
        if residual:
            s = rows / (d + 1).clamp_min(1e-30)
            rows = s @ a + s
        else:
            rows = (rows / d.clamp_min(1e-30)) @ a
    return rows


def rollout_vector(ex: Explanation, token: int, residual: bool = True, head_fusion: str = "mean",
                   start_layer: int = 0) -> np.ndarray:
    """Row `token` of the rollout over layers start_layer..L-1 of `ex`, over all tokens (special first)."""
    return rollout_rows(ex, [token], residual, head_fusion, start_layer)[0].numpy()


def rollout(ex: Explanation, keypoint: str | int | None = None, residual: bool = True,
            point: tuple[float, float] | None = None, head_fusion: str = "mean",
            start_layer: int = 0) -> AttentionMap:
    """Rollout map of a keypoint's predicted location (or of a crop `point`) on the token grid.

    Values are shares of the query's input over tokens (they sum to 1 with the special tokens);
    the returned `AttentionMap` has kind "rollout" and draws like a dependency map.
    """
    token, xy, name = ex.query(keypoint, point)
    v = rollout_vector(ex, token, residual, head_fusion, start_layer)
    ns = len(ex.layout.special)
    return AttentionMap(v[ns:].reshape(ex.layout.grid), "rollout", ex.num_layers - 1, None, xy, name, ex,
                        special=v[:ns] if ns else None)
