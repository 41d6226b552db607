"""TokenPose's keypoint-to-keypoint attention: how much each keypoint token attends to every other one.

The TokenPose paper reads these K x K blocks of the attention matrix as learned body-part constraints
(a wrist token looking at its elbow and shoulder). Rows are the querying keypoint tokens, columns the
attended ones; a row sums to 1 minus the share that went to the visual tokens (`visual_share`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np

from . import figures

CMAP = "viridis"


@dataclass
class KeypointAttention(figures.Displayable):
    """One layer's keypoint-token → keypoint-token attention, heads averaged unless `head` is set."""

    values: np.ndarray          # (K, K): row = query keypoint token, column = key keypoint token
    visual_share: np.ndarray    # (K,): the rest of each row, spent on the visual tokens
    names: tuple[str, ...]
    layer: int                  # 0-based
    head: int | None
    model_name: str = "model"
    num_layers: int = field(default=0, repr=False)
    caption: str = ""            # image · person · model, for titles (`Explanation.caption`)
    uniform: float | None = None  # 1/N over all N tokens: a uniform row's value, marked on colour bars

    @property
    def title(self) -> str:
        head = "mean of heads" if self.head is None else f"head {self.head}"
        return f"layer {self.layer + 1} · {head}"

    def plot(self, ax=None, vmax: float | None = None, colorbar: bool = True, labels: bool = True,
             title: str | None = None, vmin: float = 0.0):
        """The matrix as a heat map with keypoint names on both axes."""
        if ax is None:
            _, ax = plt.subplots(figsize=(5.2, 4.6))
        k = len(self.names)
        im = ax.imshow(self.values, cmap=CMAP, vmin=vmin, vmax=vmax if vmax is not None else float(self.values.max()))
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels(self.names if labels else [], rotation=90, fontsize=6)
        ax.set_yticklabels(self.names if labels else [], fontsize=6)
        ax.tick_params(length=0)
        ax.set_title(self.title if title is None else title, fontsize=8)
        if colorbar:
            figures.add_colorbar(im, [ax], self.uniform)
        return im

    def figure(self, scale: str = "panel"):
        """The matrix under a title naming the image, person and model; `scale` "absolute" draws it on 0..1."""
        fig, ax = plt.subplots(figsize=(5.4, 5.0))
        self.plot(ax, vmax=1.0 if figures.check_scale(scale) == "absolute" else None)
        ax.set_xlabel("attended keypoint token", fontsize=7)
        ax.set_ylabel("querying keypoint token", fontsize=7)
        fig.suptitle(f"{self.caption or f'model {self.model_name}'}\nkeypoint-to-keypoint attention", fontsize=9)
        return fig



def keypoint_attention(explanation, layer: int = -1, head: int | None = None) -> KeypointAttention:
    """The K x K keypoint-token block of one layer's attention (ValueError for models without keypoint tokens)."""
    ex = explanation
    names = ex.layout.special
    if not names:
        raise ValueError(f"'{ex.model_name}' has no keypoint tokens: keypoint-to-keypoint attention exists only "
                         f"for TokenPose models (tokenpose-t, tokenpose-s-v1, ...)")
    index = ex.layer_index(layer)
    k = len(names)
    rows = ex.attention[index].rows(list(range(k)))[0]        # (H, K, N)
    if head is None:
        rows = rows.mean(0)
    elif not 0 <= head < rows.shape[0]:
        raise ValueError(f"head {head} out of range: layer has {rows.shape[0]} heads")
    else:
        rows = rows[head]
    rows = rows.float().cpu().numpy()
    return KeypointAttention(rows[:, :k], rows[:, k:].sum(1), tuple(names), index, head, ex.model_name,
                             ex.num_layers, ex.caption, 1.0 / ex.layout.num_tokens)


def layers_figure(maps: list[KeypointAttention], columns: int = 4, scale: str = "shared"):
    """Several layers side by side, names on the outer axes; one colour range for all ("shared", the
    default), each its own ("panel"), or 0..1 ("absolute"); 1/N marked on the colour bars."""
    figures.check_scale(scale)
    n = len(maps)
    if n == 1:
        return maps[0].figure(scale)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols + 0.6, 3.2 * rows + 0.5), squeeze=False)
    vmax = 1.0 if scale == "absolute" else max(float(m.values.max()) for m in maps)
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        im = maps[i].plot(ax, vmax=None if scale == "panel" else vmax, colorbar=scale == "panel", labels=True)
        if i % cols:
            ax.set_yticklabels([])
        if i < n - cols:
            ax.set_xticklabels([])
    if scale != "panel":
        figures.add_colorbar(im, axes.ravel().tolist(), maps[0].uniform, label=f"attention ({scale} scale)",
                             fraction=0.02, pad=0.02)
    who = maps[0].caption or f"model {maps[0].model_name}"
    fig.suptitle(f"{who}\nkeypoint-to-keypoint attention (rows attend to columns; colour scale: {scale})",
                 fontsize=10)
    return fig
