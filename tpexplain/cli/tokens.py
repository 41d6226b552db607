"""`tpexplain kp-attention`: TokenPose's keypoint-to-keypoint attention (learned body-part constraints)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

# `python -m tpexplain.cli` runs cli.py as __main__; importing `.cli` would run it a second time, whose last
# lines import this module while it is half-initialised. Reuse the running module instead.
_running = sys.modules.get("__main__")
if getattr(getattr(_running, "__spec__", None), "name", None) == "tpexplain.cli":
    sys.modules.setdefault("tpexplain.cli", _running)

from . import model_options, parse_layers, prepare  # noqa: E402


def _require_keypoint_tokens(model_name: str) -> None:
    """Fail before loading any weights when the model has no keypoint tokens (a meta-device build is free)."""
    import torch

    from .. import zoo
    with torch.device("meta"):
        layout = zoo.build(model_name).token_layout
    if not layout.special:
        tokenpose = ", ".join(n for n, e in zoo.manifest().items() if e["arch"] == "tokenpose")
        raise ValueError(f"'{model_name}' has no keypoint tokens: kp-attention needs a TokenPose model ({tokenpose})")


@click.command("kp-attention")
@click.argument("image", type=click.Path())
@click.option("--layer", default="last", show_default=True, help="Encoder layer 1..L, last, all, or a comma list.")
@click.option("--head", type=int, default=None, help="One attention head (default: the mean of heads).")
@model_options
def kp_attention(image, layer, head, model_name, weights, bbox, flip, out):
    """Keypoint-to-keypoint attention of a TokenPose model: which keypoints each keypoint token looks at."""
    from ..figures import save_figure
    from ..keypoint_attention import layers_figure
    from ..record import attention_modules
    _require_keypoint_tokens(model_name)
    tag = layer.strip().lower().replace(",", "-")
    default_out = f"{Path(image).stem}_kp-attention_{tag}_{model_name}.png"
    pm, img, box, out_path = prepare(image, model_name, weights, bbox, out, default_out)
    layers = parse_layers(layer, len(attention_modules(pm.model)))
    ex = pm.explain(img, bbox=box, flip=flip)
    save_figure(layers_figure([ex.keypoint_attention(i, head) for i in layers]), out_path)
    click.echo(str(out_path))
