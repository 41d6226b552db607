"""`tpexplain attention`, `kp-attention` and `explore`: one person's attention as a figure or a page."""
from __future__ import annotations

from pathlib import Path

import click

from .options import annotate, at, figure_options, keypoint_tag, parse_keypoints, parse_layers, prepare, query


@click.command()
@click.argument("image", type=click.Path())
@click.option("--keypoint", "-k", required=True,
              help="Keypoint name of the model (l_ankle, left_ankle, head_top, ...), a comma list, or all.")
@click.option("--layer", default="last", show_default=True, help="Encoder layer 1..L, last, all, or a comma list.")
@click.option("--mode", type=click.Choice(["dependency", "affected"]), default="dependency", show_default=True)
@click.option("--head", type=int, default=None, help="One attention head (default: the mean of heads).")
@click.option("--on", "where", type=click.Choice(["crop", "image"]), default="crop", show_default=True,
              help="Draw over the model's input crop or the original image.")
@click.option("--scale", type=click.Choice(["panel", "shared", "absolute"]), default="panel", show_default=True,
              help="Colour scale of the maps: each panel its own range, one range for all, or 0..1 (1/N is "
                   "marked on the colour bars).")
@query
@at
@figure_options
def attention(image, keypoint, layer, mode, head, where, scale, query, at, model_name, weights, flip, decode, bbox,
              person, coco, out, force):
    """Dependency (or affected-area) map of a keypoint: where the prediction looks."""
    from ..figures import save_figure
    keypoints = parse_keypoints(keypoint, model_name)
    default_out = f"{Path(image).stem}_{keypoint_tag(keypoints, model_name)}_{mode}_{model_name}.png"
    pm, img, chosen, out_path = prepare(image, model_name, weights, bbox, out, default_out, force, decode=decode,
                                        coco=coco, person=person, at=at)
    layers = parse_layers(layer, pm.num_layers)
    ex = pm.explain(img, bbox=chosen.box, flip=flip, query=query)
    annotate(ex, chosen, image, model_name, weights)
    if len(keypoints) == 1 and len(layers) == 1:
        fig = ex.attention_map(mode, keypoints[0], layers[0], head, at=at).figure(where, scale=scale)
    else:
        fig = ex.grid(keypoints, layers, mode, head, where, scale=scale, at=at)
    save_figure(fig, out_path, force=force, inputs=[image])
    click.echo(str(out_path))


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
@figure_options
def kp_attention(image, layer, head, model_name, weights, flip, decode, bbox, person, coco, out, force):
    """Keypoint-to-keypoint attention of a TokenPose model: which keypoints each keypoint token looks at."""
    from ..figures import save_figure
    from ..keypoint_attention import layers_figure
    _require_keypoint_tokens(model_name)
    tag = layer.strip().lower().replace(",", "-")
    default_out = f"{Path(image).stem}_kp-attention_{tag}_{model_name}.png"
    pm, img, chosen, out_path = prepare(image, model_name, weights, bbox, out, default_out, force, decode=decode,
                                        coco=coco, person=person)
    layers = parse_layers(layer, pm.num_layers)
    ex = pm.explain(img, bbox=chosen.box, flip=flip)
    annotate(ex, chosen, image, model_name, weights)
    save_figure(layers_figure([ex.keypoint_attention(i, head) for i in layers]), out_path, force=force,
                inputs=[image])
    click.echo(str(out_path))


@click.command()
@click.argument("image", type=click.Path())
@click.option("--keypoint", "-k", default="all", show_default=True,
              help="Keypoints offered in the page's list (comma list or all).")
@click.option("--max-queries", type=click.IntRange(min=16), default=1024, show_default=True,
              help="Query positions stored per layer; larger grids are subsampled to fit.")
@query
@figure_options
def explore(image, keypoint, max_queries, query, model_name, weights, flip, decode, bbox, person, coco, out, force):
    """One self-contained HTML page: click any point to see its dependency map at every layer.

    A keypoint picked from the page's list queries the token of --query (the page names it); a click
    queries the token under the point. Written to -o, an .html name (default: IMAGE-stem_explore_MODEL.html
    in the current folder).
    """
    from ..viz.explore import explore_page
    keypoints = parse_keypoints(keypoint, model_name)
    default_out = f"{Path(image).stem}_explore_{model_name}.html"
    pm, img, chosen, out_path = prepare(image, model_name, weights, bbox, out, default_out, force, kind="html",
                                        decode=decode, coco=coco, person=person)
    ex = pm.explain(img, bbox=chosen.box, flip=flip, query=query)
    annotate(ex, chosen, image, model_name, weights)
    page = explore_page(ex, keypoints=keypoints, max_queries=max_queries, title=Path(image).name)
    click.echo(str(page.save(out_path, force=force, inputs=[image])))
