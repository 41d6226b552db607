"""Layer depth: how a keypoint's dependency map changes from the first encoder layer to the last.

The TransPose paper's reading is that early layers gather global context and later layers focus on fine,
local, keypoint-specific cues. Per layer we measure it on the dependency map p (the query's attention over
the visual tokens, renormalised to sum 1; special tokens such as TokenPose's keypoint tokens are left out):

- entropy          H(p) = -Σ p_i log p_i in nats: 0 for a one-token map, log N for a uniform one;
- mean distance    Σ p_i ‖c_i - q‖ from the query point q to the token centres c_i, in crop pixels and in
                   units of the person's size (`person_size`);
- mass within r    Σ p_i over the tokens whose centre lies within r of q.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np

from ..explanation import Explanation
from ..layout import TokenLayout
from .results import Result

METRIC_KEYS = ("keypoint", "layer", "entropy", "entropy_max", "distance_px", "distance_body", "mass_within",
               "radius_px")


def _distribution(p: np.ndarray) -> np.ndarray:
    """A flat copy of p renormalised to sum 1 (negative values, which attention never has, count as 0)."""
    p = np.clip(np.asarray(p, dtype=np.float64).reshape(-1), 0.0, None)
    total = p.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("attention map has no positive mass")
    return p / total


def token_centers(layout: TokenLayout) -> np.ndarray:
    """(gh, gw, 2) crop-pixel centres (x, y) of the visual tokens, row-major like the attention rows."""
    gh, gw = layout.grid
    sy, sx = layout.stride
    xs = (np.arange(gw) + 0.5) * sx
    ys = (np.arange(gh) + 0.5) * sy
    return np.stack(np.meshgrid(xs, ys), axis=-1)


def _distances(p: np.ndarray, layout: TokenLayout, query_xy: tuple[float, float]) -> np.ndarray:
    if np.size(p) != layout.num_visual:
        raise ValueError(f"attention map has {np.size(p)} values; the token grid {layout.grid[0]}x{layout.grid[1]} "
                         f"has {layout.num_visual}")
    c = token_centers(layout).reshape(-1, 2)
    return np.hypot(c[:, 0] - float(query_xy[0]), c[:, 1] - float(query_xy[1]))


def attention_entropy(p: np.ndarray) -> float:
    """Shannon entropy (nats) of an attention map over visual tokens, any shape, renormalised to sum 1."""
    q = _distribution(p)
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def mean_attention_distance(p: np.ndarray, layout: TokenLayout, query_xy: tuple[float, float]) -> float:
    """Σ p_i ‖c_i − q‖ in crop pixels: the attention-weighted distance from the query to the token centres."""
    return float((_distribution(p) * _distances(p, layout, query_xy)).sum())


def mass_within(p: np.ndarray, layout: TokenLayout, query_xy: tuple[float, float], radius: float) -> float:
    """Share of the map's mass on tokens whose centre lies within `radius` crop pixels of the query."""
    if not radius >= 0:
        raise ValueError(f"radius must be a non-negative number of pixels, got {radius}")
    return float(_distribution(p)[_distances(p, layout, query_xy) <= radius].sum())


def person_size(ex: Explanation) -> float:
    """The person's size in crop pixels: the diagonal of the box around all predicted keypoints, the
    keypoints clipped to the input crop.

    Clipping keeps a wild prediction (an untrained model's flat heatmaps can decode far outside the crop)
    from inflating the size; the floor of one token's diagonal keeps a degenerate one (every keypoint on one
    spot) from dividing by zero.
    """
    h, w = ex.input_size
    kp = np.clip(np.asarray(ex.keypoints_crop, dtype=np.float64), 0, [w - 1, h - 1])
    diag = float(np.hypot(*(kp.max(0) - kp.min(0))))
    return max(diag, float(np.hypot(*ex.layout.stride)))


def default_radius(ex: Explanation) -> float:
    """The "near the query" radius in crop pixels: a tenth of the person's size, at least one token stride
    (so the query's own token always counts)."""
    return max(0.1 * person_size(ex), float(max(ex.layout.stride)))


def layer_metrics(ex: Explanation, keypoint: str | int, head: int | None = None,
                  radius: float | None = None, at: str = "pred") -> list[dict]:
    """Entropy, mean distance and near-query mass of `keypoint`'s dependency map at every layer.

    One dict per layer: keypoint, layer (1-based), entropy, entropy_max (log N), distance_px, distance_body
    (distance_px / person_size), mass_within, radius_px. `radius` defaults to `default_radius(ex)`; `at`
    queries the predicted ("pred") or ground-truth ("gt") joint.
    """
    radius = default_radius(ex) if radius is None else float(radius)
    size = person_size(ex)
    rows = []
    for layer in range(ex.num_layers):
        m = ex.dependency(keypoint, layer=layer, head=head, at=at)
        dist = mean_attention_distance(m.values, ex.layout, m.query_crop)
        rows.append({
            "keypoint": m.keypoint,
            "layer": layer + 1,
            "entropy": attention_entropy(m.values),
            "entropy_max": float(np.log(ex.layout.num_visual)),
            "distance_px": dist,
            "distance_body": dist / size,
            "mass_within": mass_within(m.values, ex.layout, m.query_crop, radius),
            "radius_px": radius,
        })
    return rows


@dataclass
class LayerStudy(Result):
    """Dependency maps of some keypoints at every layer, with the per-layer metrics.

    `to_json` writes `summary()`; `to_csv` one row per keypoint and layer, the columns of METRIC_KEYS.
    """

    explanation: Explanation = field(repr=False)
    keypoints: list[str]
    head: int | None
    metrics: list[dict]
    person_size_px: float
    at: str = "pred"                  # the keypoints' predicted or ground-truth ("gt") positions are queried
    unlabelled: list[str] = field(default_factory=list)   # with at "gt": joints without ground truth (no rows)

    def table(self) -> str:
        """The metrics as a fixed-width text table."""
        head = f"{'keypoint':<11} {'layer':>5} {'entropy':>8} {'/max':>6} {'dist px':>8} {'dist body':>9} " \
               f"{'mass<r':>7} {'r px':>6}"
        lines = [head]
        for r in self.metrics:
            lines.append(f"{r['keypoint']:<11} {r['layer']:>5d} {r['entropy']:>8.3f} {r['entropy_max']:>6.2f} "
                         f"{r['distance_px']:>8.1f} {r['distance_body']:>9.3f} {r['mass_within']:>7.3f} "
                         f"{r['radius_px']:>6.1f}")
        if self.unlabelled:
            lines.append(f"not labelled in the ground truth (no rows): {', '.join(self.unlabelled)}")
        return "\n".join(lines)

    def csv_rows(self) -> tuple[list[str], list[list]]:
        return list(METRIC_KEYS), [[r[k] for k in METRIC_KEYS] for r in self.metrics]

    def summary(self) -> dict:
        ex = self.explanation
        return {"model": ex.model_name, "keypoints": self.keypoints,
                "head": "mean" if self.head is None else self.head,
                "layers": ex.num_layers, "tokens": list(ex.layout.grid), "stride": list(ex.layout.stride),
                "person_size_px": self.person_size_px,
                "person_size_rule": "diagonal of the predicted keypoints' box, crop pixels",
                "queries": [ex.query_info(k, at=self.at) for k in self.keypoints if k not in self.unlabelled],
                **({"not_labelled": self.unlabelled} if self.unlabelled else {}),
                "metrics": self.metrics}

    def figure(self, where: str = "crop", scale: str = "shared"):
        """The maps as small multiples (a row per layer, a column per keypoint; one keypoint: the layers side
        by side) on one colour scale by default (`scale` "shared"; "absolute": 0..1; "panel": each its own,
        with its own bar), over line plots of the three metrics against depth."""
        ex = self.explanation
        n_layers = ex.num_layers
        if len(self.keypoints) == 1:
            rows = [[None] + [(self.keypoints[0], layer) for layer in range(n_layers)]]
        else:
            rows = [[None] + [(kp, layer) for kp in self.keypoints] for layer in range(n_layers)]
        maps = {p: None if p[0] in self.unlabelled else ex.dependency(p[0], layer=p[1], head=self.head, at=self.at)
                for row in rows for p in row if p is not None}
        head = "mean of heads" if self.head is None else f"head {self.head}"
        plots_in, legend_w = 2.7, 1.9
        at = ", at the ground truth" if self.at == "gt" else ""
        fig = ex.mosaic_figure(rows, maps, where, scale, f"dependency maps by layer ({head}{at}", plots_in, 2.0)
        w, h = fig.get_size_inches()
        # three plots side by side under the maps, their legend right of them, outside the data
        axes = [fig.add_axes(((0.6 + i * (w - legend_w - 0.6) / 3) / w, 0.45 / h,
                              ((w - legend_w - 0.6) / 3 - 0.55) / w, (plots_in - 0.95) / h)) for i in range(3)]
        self._plot_metrics(axes)
        return fig

    def _plot_metrics(self, axes) -> None:
        """Entropy, distance and local mass against depth: a keypoint's colour is its joint (shared by left
        and right), its line style its side (solid left, dashed right, dotted midline)."""
        layers = np.arange(1, self.explanation.num_layers + 1)
        specs = (("entropy", "entropy (nats)"), ("distance_body", "mean distance (person sizes)"),
                 ("mass_within", f"mass within r={self.metrics[0]['radius_px']:.0f}px"))
        joints = list(dict.fromkeys(_joint(kp) for kp in self.keypoints if kp not in self.unlabelled))
        palette = plt.get_cmap("tab10" if len(joints) <= 10 else "tab20")
        colour = {j: palette(i % palette.N) for i, j in enumerate(joints)}
        for ax, (key, label) in zip(axes, specs):
            for kp in [k for k in self.keypoints if k not in self.unlabelled]:
                ys = [r[key] for r in self.metrics if r["keypoint"] == kp]
                ax.plot(layers, ys, marker="o", ms=2.5, lw=1.1, color=colour[_joint(kp)], ls=_side_style(kp),
                        label=kp)
            if key == "entropy":
                ax.axhline(self.metrics[0]["entropy_max"], color="grey", ls="--", lw=0.8)
                ax.annotate("uniform (log N)", (layers[-1], self.metrics[0]["entropy_max"]), fontsize=6,
                            color="grey", xytext=(0, -2), textcoords="offset points", va="top", ha="right")
            ax.set_xlabel("layer", fontsize=8)
            ax.set_title(label, fontsize=9)
            ax.set_xticks(layers)
            ax.tick_params(labelsize=7)
        from matplotlib.lines import Line2D
        handles = [Line2D([], [], color=colour[j], lw=1.5, label=j) for j in joints]
        sides = {_side_style(kp) for kp in self.keypoints}
        handles += [Line2D([], [], color="black", lw=1.1, ls=ls, label=name)
                    for ls, name in (("-", "left"), ("--", "right"), (":", "midline")) if ls in sides]
        fig = axes[-1].figure
        fig.legend(handles=handles, fontsize=6.5, frameon=False, loc="center left", ncol=2 if len(handles) > 12 else 1,
                   bbox_to_anchor=(axes[-1].get_position().x1 + 0.1 / fig.get_figwidth(),
                                   axes[-1].get_position().y0 + axes[-1].get_position().height / 2))


def _joint(name: str) -> str:
    """The joint a keypoint names, without its side: l_wrist → wrist."""
    return name[2:] if name[:2] in ("l_", "r_") else name


def _side_style(name: str) -> str:
    return "-" if name.startswith("l_") else "--" if name.startswith("r_") else ":"


def layer_study(ex: Explanation, keypoints: str | int | list, head: int | None = None,
                radius: float | None = None, at: str = "pred") -> LayerStudy:
    """Every layer's dependency map and metrics for one keypoint, several, or "all"; `at` "gt" queries the
    ground-truth joints (`ex.ground_truth`) instead of the predicted ones (unlabelled ones: no rows)."""
    if isinstance(keypoints, str) and keypoints.strip().lower() == "all":
        keypoints = list(ex.keypoint_names)
    elif isinstance(keypoints, (str, int)):
        keypoints = [keypoints]
    names = [ex.keypoint_names[ex.keypoint(k)] for k in keypoints]
    if not names:
        raise ValueError("no keypoints given")
    if head is not None and not 0 <= head < ex.num_heads:
        raise ValueError(f"head {head} out of range: the model has {ex.num_heads} heads (0..{ex.num_heads - 1})")
    # at the ground truth, joints it leaves unlabelled get no rows (said in the table); none labelled: an error
    missing = ex.unlabelled(names) if at == "gt" else set()
    metrics = [row for k in names if k not in missing for row in layer_metrics(ex, k, head, radius, at)]
    return LayerStudy(ex, names, head, metrics, person_size(ex), at, [k for k in names if k in missing])
