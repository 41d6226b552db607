"""The null models every claim is compared with: the same architecture with re-initialised weights, and that
random model with its attention made as peaked as the trained model's (query projection scaled so that the
mean attention entropy matches)."""
from __future__ import annotations

import copy
import logging
from typing import Callable

import numpy as np
import torch
from torch import nn

from ...api import PoseModel
from ...record import attention_modules
from ..sanity import reinitialise

log = logging.getLogger(__name__)
BASELINES = ("random", "peaked")


def random_model(pose_model: PoseModel, seed: int) -> PoseModel:
    """The model's architecture with fresh weights drawn from `seed`: the zoo's constructor when the model is
    a zoo model (the weights `load(name, weights="random")` would draw under that seed), else a copy with
    every module re-initialised."""
    from ... import zoo
    name = getattr(pose_model.model, "zoo_name", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = zoo.build(name) if name else None
        except (KeyError, ValueError):
            model = None
    if model is None:
        model = copy.deepcopy(pose_model.model)
        reinitialise(model, seed)
    model = model.to(pose_model.device)
    return PoseModel(model, f"{pose_model.name} (random weights, seed {seed})", pose_model.keypoint_names,
                     pose_model.decode)


def _query_weights(module: nn.Module) -> list[torch.Tensor]:
    """The parameters producing an attention module's queries: the first third of its fused q/k/v projection
    (TransPose's in_proj, TokenPose's to_qkv, ViTPose's qkv), weight and bias."""
    for wname, bname in (("in_proj_weight", "in_proj_bias"), ("to_qkv.weight", "to_qkv.bias"),
                         ("qkv.weight", "qkv.bias")):
        params = dict(module.named_parameters())
        if wname in params:
            return [p for p in (params[wname], params.get(bname)) if p is not None]
    raise ValueError(f"cannot find the query projection of {type(module).__name__}")


@torch.no_grad()
def scale_attention(pose_model: PoseModel, factor: float, base: PoseModel | None = None) -> PoseModel:
    """A copy of `base` (default `pose_model`) whose attention logits are `factor` times larger: every query
    projection is scaled, so softmax(factor · q kᵀ) — more peaked for factor > 1, flatter below 1."""
    src = base or pose_model
    model = copy.deepcopy(src.model)
    for module in attention_modules(model):
        for p in _query_weights(module):
            rows = p.shape[0] // 3
            p[:rows] *= factor
    return PoseModel(model, f"{src.name}, attention x{factor:.3g}", src.keypoint_names, src.decode)


def peaked_model(random: PoseModel, target_entropy: float, entropy_of: Callable[[PoseModel], float],
                 low: float = 0.25, high: float = 256.0, steps: int = 10) -> tuple[PoseModel, dict]:
    """`random` with its attention logits scaled so that `entropy_of(model)` (the mean attention entropy over
    calibration people) matches `target_entropy`: a bisection on log(scale). Returns the model and the match
    achieved (scale, target, achieved, and the unscaled random model's entropy)."""
    start = entropy_of(random)
    cache: dict[float, float] = {1.0: start}

    def h(s: float) -> float:
        if s not in cache:
            cache[s] = entropy_of(scale_attention(random, s))
        return cache[s]

    lo, hi = np.log(low), np.log(high)
    if h(float(np.exp(hi))) > target_entropy or h(float(np.exp(lo))) < target_entropy:
        log.warning("the peaked baseline cannot reach the trained model's entropy within scales %g-%g", low, high)
    for _ in range(steps):           # entropy falls as the logits grow
        mid = (lo + hi) / 2
        if h(float(np.exp(mid))) > target_entropy:
            lo = mid
        else:
            hi = mid
    best = min(cache, key=lambda s: abs(cache[s] - target_entropy))
    info = {"scale": best, "target_entropy": target_entropy, "achieved_entropy": cache[best],
            "random_entropy": start, "evaluations": len(cache)}
    return scale_attention(random, best), info
