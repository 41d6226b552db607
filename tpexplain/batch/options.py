"""What a batch draws: the figure kinds and the options that decide each figure (and whether it is up to date)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

FIGURE_KINDS = ("attention", "layers", "occlusion")


@dataclass(frozen=True)
class FigureOptions:
    """What each figure kind draws; only the fields a kind uses decide whether its output is up to date.

    `keypoints` is a tuple of names, or text ("all", or names separated by commas) read against the
    model's own keypoint set when the batch starts, so "all" means MPII's 16 for an MPII model.
    """

    keypoints: tuple[str, ...] | str = "all"      # attention, layers
    layers: str = "last"                          # attention: "last", "all" or 1-based numbers "1,3"
    mode: str = "dependency"                      # attention: dependency | affected
    head: int | None = None                       # attention, layers: one head (default: mean of heads)
    where: str = "crop"                           # attention: crop | image
    occlusion_keypoint: str = "l_ankle"           # occlusion: the keypoint whose prediction is studied
    part: str | None = None                       # occlusion: named body part to hide
    region: tuple[float, float, float, float] | None = None  # occlusion: box to hide (image pixels)
    fill: str = "mean"                            # occlusion: mean | blur | noise
    flip: bool = True
    decode: str = "official"                      # keypoint decoding: official | guarded
    query: str = "official"                       # attention, layers: a keypoint's token, official | geometric
    at: str = "pred"                              # attention, layers, occlusion: the keypoint's predicted or
                                                  # ground-truth ("gt") position
    dpi: int = 120
    format: str = "png"
    replace: bool = False                         # --force: replace a figure even if tpexplain did not make it

    def signature(self, kind: str) -> dict:
        """The options that determine `kind`'s output (stored in the manifest)."""
        common = {"flip": self.flip, "decode": self.decode, "dpi": self.dpi, "format": self.format}
        if self.at != "pred":       # rows made before --at existed stay up to date for the default
            common["at"] = self.at
        keypoints = self.keypoints if isinstance(self.keypoints, str) else list(self.keypoints)
        if kind == "attention":
            own = {"keypoints": keypoints, "layers": self.layers, "mode": self.mode,
                   "head": self.head, "where": self.where, "query": self.query}
        elif kind == "layers":
            own = {"keypoints": keypoints, "head": self.head, "query": self.query}
        elif kind == "occlusion":
            own = {"keypoint": self.occlusion_keypoint, "part": self.part,
                   "region": list(self.region) if self.region else None, "fill": self.fill}
        else:
            raise ValueError(f"unknown figure kind '{kind}'; use {', '.join(FIGURE_KINDS)}")
        return {**own, **common}

    def for_model(self, model_name: str) -> FigureOptions:
        """These options with keypoints given as text read against `model_name`'s keypoint set.

        Only the zoo's description of the model is read (no weights). A tuple of names is kept as given.
        """
        if not isinstance(self.keypoints, str):
            return self
        from ..keypoints import keypoint_set
        from ..zoo import keypoint_names
        return replace(self, keypoints=tuple(keypoint_set(keypoint_names(model_name)).parse(self.keypoints)))


def check_kinds(figures: Iterable[str]) -> list[str]:
    """The figure kinds asked for, lower-case, each once, in order; unknown kinds fail."""
    kinds = []
    for k in figures:
        k = k.strip().lower()
        if not k:
            continue
        if k not in FIGURE_KINDS:
            raise ValueError(f"unknown figure kind '{k}'; use {', '.join(FIGURE_KINDS)}")
        if k not in kinds:
            kinds.append(k)
    if not kinds:
        raise ValueError(f"no figure kinds given; use {', '.join(FIGURE_KINDS)}")
    return kinds


def resolve_layers(spec: str, num_layers: int) -> list[int]:
    """'last', 'all' or 1-based layer numbers "1,3" → 0-based layer indices."""
    t = spec.strip().lower()
    if t == "last":
        return [num_layers - 1]
    if t == "all":
        return list(range(num_layers))
    try:
        layers = [int(p) - 1 for p in t.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"bad layers '{spec}': use 1..{num_layers}, last or all") from None
    bad = [n + 1 for n in layers if not 0 <= n < num_layers]
    if bad or not layers:
        raise ValueError(f"layers '{spec}' out of range: the model has {num_layers} encoder layers")
    return layers
