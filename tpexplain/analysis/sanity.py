"""Sanity checks for attention explanations, beyond the TransPose paper.

- Model-parameter randomisation (Adebayo et al. 2018, cascading, as Quantus' MPRT with top-down order):
  re-initialise the encoder layers of a copy of the model from the last one down, one more at each step,
  and measure how similar its dependency maps stay to the trained model's at the same query points. An
  explanation that does not change when the weights it claims to explain are destroyed explains nothing.
- Agreement between attention and perturbation: the rank correlation between a keypoint's dependency
  map and its occlusion-sensitivity map (how much the heatmap peak drops when each region is hidden).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from ..api import PoseModel
from ..record import attention_modules
from .rollout import rollout_rows
from .stats import spearman

Sample = tuple[np.ndarray, "tuple[float, float, float, float] | None"]   # (RGB image, person box or None)
MAP_METHODS = ("dependency", "rollout")


# ---------------------------------------------------------------------------------------------------
# Similarity of two maps

def ssim(a: np.ndarray, b: np.ndarray, window: int = 5) -> float:
    """Structural similarity of two 2-D maps, each min-max scaled to [0, 1] first (maps are compared by
    shape, not scale); mean over `window`-sized local windows. 1.0 exactly for equal maps."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim needs two 2-D maps of one shape, got {a.shape} and {b.shape}")
    if np.array_equal(a, b):
        return 1.0
    a, b = _unit(a), _unit(b)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    blur = lambda x: cv2.blur(x, (window, window), borderType=cv2.BORDER_REFLECT)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma ** 2, blur(b * b) - mb ** 2, blur(a * b) - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))
    return float(s.mean())


def _unit(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


# ---------------------------------------------------------------------------------------------------
# Model-parameter randomisation

def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder layers in forward order: `global_encoder.layers` (TransPose), otherwise the module
    holding each recorded attention module."""
    enc = getattr(model, "global_encoder", None)
    if enc is not None and hasattr(enc, "layers"):
        return list(enc.layers)
    names = {id(m): n for n, m in model.named_modules()}
    modules = dict(model.named_modules())
    out = []
    for a in attention_modules(model):
        parent = names[id(a)].rpartition(".")[0]
        out.append(modules[parent] if parent else a)
    return out


@torch.no_grad()
def reinitialise(module: nn.Module, seed: int = 0) -> None:
    """Fresh weights for `module`, drawn as at construction (Xavier for matrices, as the TransPose encoder
    does; norms to identity; biases to their defaults), from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        for name, p in module.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif name.endswith("in_proj_bias"):
                nn.init.zeros_(p)


def cascading_randomisation(pose_model: PoseModel, seed: int = 0) -> Iterator[tuple[str, tuple[int, ...], PoseModel]]:
    """(label, randomised layer indices, model) for a copy of the model with no layer re-initialised, then
    the last encoder layer, then the last two, ..., then all of them. The same copy is modified in place
    between steps, so use each model before asking for the next; the original is never touched."""
    model = copy.deepcopy(pose_model.model)
    layers = encoder_layers(model)
    pm = PoseModel(model, f"{pose_model.name} (randomised)", pose_model.keypoint_names)
    yield "trained", (), pm
    done: list[int] = []
    for i in range(len(layers) - 1, -1, -1):
        reinitialise(layers[i], seed + i)
        done.insert(0, i)
        label = f"layer {i + 1}" if len(done) == 1 else f"layers {i + 1}-{len(layers)}"
        yield label, tuple(done), pm


@dataclass
class RandomisationStep:
    """Similarities to the trained model's maps, one value per (sample, keypoint) query."""

    label: str
    randomised: tuple[int, ...]                 # 0-based encoder layers re-initialised so far
    spearman: dict[str, list[float]]            # by map method
    ssim: dict[str, list[float]]
    example: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # first query's map per method

    def mean(self, metric: str = "spearman", method: str = "dependency") -> float:
        v = np.asarray(getattr(self, metric)[method], np.float64)
        v = v[np.isfinite(v)]
        return float(v.mean()) if len(v) else float("nan")


@dataclass
class Randomisation:
    """The cascading model-randomisation test: step 0 is an untouched copy (similarity 1 by construction)."""

    steps: list[RandomisationStep]
    keypoints: list[str]
    layer: int
    num_queries: int

    def summary(self) -> list[dict]:
        return [{"step": s.label, "randomised_layers": [i + 1 for i in s.randomised],
                 **{f"{metric}_{method}": s.mean(metric, method)
                    for metric in ("spearman", "ssim") for method in s.spearman}} for s in self.steps]

    def figure(self):
        """Similarity per step (left) and the first query's map at each step (right)."""
        import matplotlib.pyplot as plt
        from .. import figures
        n = len(self.steps)
        fig = plt.figure(figsize=(4.2 + 1.6 * n, 3.2))
        grid = fig.add_gridspec(1, n + 1, width_ratios=[2.6] + [1] * n, wspace=0.15)
        ax = fig.add_subplot(grid[0, 0])
        x = np.arange(n)
        for method in self.steps[0].spearman:
            for metric, style in (("spearman", "-o"), ("ssim", "--s")):
                ax.plot(x, [s.mean(metric, method) for s in self.steps], style, ms=4, label=f"{metric} · {method}")
        ax.set_xticks(x, [s.label for s in self.steps], rotation=35, ha="right", fontsize=7)
        lows = [s.mean(metric, method) for s in self.steps for metric in ("spearman", "ssim")
                for method in s.spearman]
        ax.set_ylim(min([-0.2] + [v - 0.05 for v in lows if np.isfinite(v)]), 1.05)
        ax.axhline(0, color="gray", lw=0.5)
        ax.set_ylabel("similarity to trained model", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
        ax.set_title(f"cascading randomisation ({self.num_queries} queries)", fontsize=8)
        # one colour range for every step (a random model's flat map must not look as vivid as a peaked one)
        shown = [s.example.get("dependency") for s in self.steps]
        top = max((float(np.max(m)) for m in shown if m is not None), default=1.0)
        axes, im = [], None
        for j, (s, m) in enumerate(zip(self.steps, shown)):
            a = fig.add_subplot(grid[0, j + 1])
            if m is not None:
                im = a.imshow(m, cmap=figures.CMAP, vmin=0.0, vmax=top)
            a.set_axis_off()
            a.set_title(s.label, fontsize=7)
            axes.append(a)
        if im is not None:
            figures.add_colorbar(im, axes, 1.0 / np.size(shown[0]), label="attention (shared scale)", fraction=0.02)
        return fig


def _maps(ex, points: list[tuple[float, float]], methods: Sequence[str], layer: int) -> list[dict[str, np.ndarray]]:
    """Each point's maps by method; rollout rows for all points in one pass (each layer's map built once)."""
    for method in methods:
        if method not in MAP_METHODS:
            raise ValueError(f"unknown map method '{method}'; use {', '.join(MAP_METHODS)}")
    out = [{} for _ in points]
    if "dependency" in methods:
        for o, p in zip(out, points):
            o["dependency"] = ex.dependency(point=p, layer=layer).values
    if "rollout" in methods:
        ns = len(ex.layout.special)
        rows = rollout_rows(ex, [ex.layout.token_at(*p) for p in points]).numpy()
        for o, r in zip(out, rows):
            o["rollout"] = r[ns:].reshape(ex.layout.grid)
    return out


def model_randomisation(pose_model: PoseModel, samples: Sequence[Sample], keypoints: Sequence[str] | None = None,
                        layer: int = -1, seed: int = 0, methods: Sequence[str] = ("dependency", "rollout"),
                        flip: bool = False, progress: Callable[[int, int], None] | None = None) -> Randomisation:
    """Cascading randomisation of the encoder, top layer first, on people `samples` [(image, box)].

    Queries are the trained model's predicted keypoints (crop pixels) and stay fixed across steps, so
    only the maps can change. Similarity per query: Spearman's rho and SSIM against the trained maps.
    """
    names = list(keypoints) if keypoints is not None else list(pose_model.keypoint_names)
    if not samples:
        raise ValueError("model randomisation needs at least one image")
    for method in methods:
        if method not in MAP_METHODS:
            raise ValueError(f"unknown map method '{method}'; use {', '.join(MAP_METHODS)}")
    queries, reference = [], []     # per sample: its query points and their trained maps
    for image, box in samples:
        ex = pose_model.explain(image, bbox=box, flip=flip)
        points = [tuple(float(v) for v in ex.keypoints_crop[ex.keypoint(name)]) for name in names]
        queries.append(points)
        reference.append(_maps(ex, points, methods, layer))
    steps = []
    total = len(encoder_layers(pose_model.model)) + 1
    for n, (label, done, pm) in enumerate(cascading_randomisation(pose_model, seed)):
        rho = {m: [] for m in methods}
        sim = {m: [] for m in methods}
        example: dict[str, np.ndarray] = {}
        for i, (image, box) in enumerate(samples):
            ex = pm.explain(image, bbox=box, flip=False)
            maps = _maps(ex, queries[i], methods, layer)
            for ref, new in zip(reference[i], maps):
                for m in methods:
                    rho[m].append(spearman(ref[m], new[m]))
                    sim[m].append(ssim(ref[m], new[m]))
            if i == 0:
                example = maps[0]
        steps.append(RandomisationStep(label, done, rho, sim, example))
        if progress:
            progress(n + 1, total)
    return Randomisation(steps, names, layer, sum(len(q) for q in queries))


# ---------------------------------------------------------------------------------------------------
# Attention vs occlusion sensitivity

def attention_occlusion_agreement(pose_model: PoseModel, image: np.ndarray, bbox=None,
                                  keypoints: Sequence[str] | None = None, window: int = 32, stride: int = 16,
                                  fill: str = "mean") -> list[dict]:
    """Spearman's rho, over the token grid, between each keypoint's occlusion-sensitivity map and its
    attention maps at the predicted location: the last layer's dependency, the first layer's, and rollout.

    One dict per keypoint (keypoint, dependency, first_layer, rollout); a keypoint whose heatmap no window
    changed has no ranking to compare and is left out.
    """
    from .sensitivity import occlusion_sensitivity
    names = list(keypoints) if keypoints is not None else list(pose_model.keypoint_names)
    sens = occlusion_sensitivity(pose_model, image, bbox=bbox, window=window, stride=stride, fill=fill,
                                 keypoints=names)
    ex = sens.explanation
    kept = [name for name in sens.keypoints if np.ptp(sens.map(name)) > 0]
    ns = len(ex.layout.special)
    rolled = rollout_rows(ex, [ex.query(name)[0] for name in kept]).numpy() if kept else []
    return [{"keypoint": name,
             "dependency": sens.rank_correlation(ex.dependency(name)),
             "first_layer": sens.rank_correlation(ex.dependency(name, layer=0)),
             "rollout": sens.rank_correlation(r[ns:].reshape(ex.layout.grid), name)}
            for name, r in zip(kept, rolled)]
