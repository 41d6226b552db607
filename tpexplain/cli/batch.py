"""`tpexplain batch` (figures for a folder or a COCO file) and `tpexplain explore` (an interactive page)."""
from __future__ import annotations

from pathlib import Path

import click

# No module-level import of .cli: cli.py registers these commands at its end, so importing it from here
# would be circular (and breaks `python -m tpexplain.cli`); its helpers are imported inside the commands.


@click.command()
@click.argument("folder", required=False, type=click.Path())
@click.option("--boxes", default=None, type=click.Path(),
              help="Person boxes for FOLDER's images: JSON {image: [[x,y,w,h], ...]} or CSV image,x,y,w,h.")
@click.option("--coco", default=None, type=click.Path(), help="COCO person-keypoints file: every annotated person.")
@click.option("--images", default=None, type=click.Path(), help="Folder of the COCO file's images.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--figures", default="attention", show_default=True,
              help="Comma list of figure kinds: attention, layers, occlusion.")
@click.option("--keypoint", "-k", default="all", show_default=True,
              help="attention/layers: keypoint names (comma list) or all.")
@click.option("--layer", default="last", show_default=True, help="attention: encoder layer 1..L, last, or all.")
@click.option("--mode", type=click.Choice(["dependency", "affected"]), default="dependency", show_default=True,
              help="attention: attention row (dependency) or column (affected area).")
@click.option("--head", type=int, default=None, help="attention/layers: one head (default: mean of heads).")
@click.option("--on", "where", type=click.Choice(["crop", "image"]), default="crop", show_default=True,
              help="attention: draw over the input crop or the original image.")
@click.option("--occlude-keypoint", default="l_ankle", show_default=True,
              help="occlusion: the keypoint whose prediction is studied.")
@click.option("--part", default=None, help="occlusion: named body part to hide (default: around the keypoint).")
@click.option("--region", default=None, metavar="X,Y,W,H", help="occlusion: image box to hide instead of a part.")
@click.option("--fill", type=click.Choice(["mean", "blur", "noise"]), default="mean", show_default=True,
              help="occlusion: what the hidden region is filled with.")
@click.option("--model", "model_name", default="default", show_default=True, help="Zoo name (`tpexplain models`).")
@click.option("--weights", default=None, type=click.Path(), help="Checkpoint file (default: the zoo's).")
@click.option("--flip/--no-flip", default=True, show_default=True, help="Flip test for the prediction.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: every core).")
@click.option("--dpi", type=click.IntRange(min=20), default=120, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["png", "jpg", "svg", "pdf"]), default="png", show_default=True)
@click.option("--force", is_flag=True, help="Redo every output, even complete ones.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def batch(ctx, folder, boxes, coco, images, out_dir, figures, keypoint, layer, mode, head, where, occlude_keypoint,
          part, region, fill, model_name, weights, flip, jobs, dpi, fmt, force, no_progress):
    """Figures for every image of FOLDER (whole, or per --boxes) or every person of a --coco file.

    Resumable: a re-run skips complete outputs. Writes OUT/manifest.jsonl and OUT/index.html; the exit
    status is 1 when any figure failed.
    """
    from ..batch import FigureOptions, coco_items, folder_items, run_batch
    from . import parse_keypoints
    from ..io import parse_bbox
    from ..keypoints import COCO_KEYPOINTS, keypoint_index
    if bool(folder) == bool(coco):
        raise click.UsageError("give an image FOLDER or --coco ANN --images DIR (one of them)")
    if coco and not images:
        raise click.UsageError("--coco needs --images")
    if boxes and not folder:
        raise click.UsageError("--boxes goes with an image FOLDER")
    items = coco_items(coco, images) if coco else folder_items(folder, boxes)
    options = FigureOptions(
        keypoints=tuple(parse_keypoints(keypoint)), layers=layer, mode=mode, head=head, where=where,
        occlusion_keypoint=COCO_KEYPOINTS[keypoint_index(occlude_keypoint)], part=part,
        region=parse_bbox(region) if region else None, fill=fill, flip=flip, dpi=dpi, format=fmt)
    summary = run_batch(items, figures.split(","), out_dir, model_name, weights, jobs,
                        options, force=force, progress=not no_progress)
    click.echo(str(summary), err=True)
    click.echo(summary.index)
    if summary.failed:
        ctx.exit(1)


@click.command()
@click.argument("image", type=click.Path())
@click.option("--keypoint", "-k", default="all", show_default=True,
              help="Keypoints offered in the page's list (comma list or all).")
@click.option("--max-queries", type=click.IntRange(min=16), default=1024, show_default=True,
              help="Query positions stored per layer; larger grids are subsampled to fit.")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: IMAGE-stem_explore_MODEL.html in the current folder).")
@click.option("--flip/--no-flip", default=True, show_default=True, help="Flip test for the prediction.")
@click.option("--bbox", default=None, metavar="X,Y,W,H", help="Person box in image pixels (default: whole image).")
@click.option("--weights", default=None, type=click.Path(), help="Checkpoint file (default: the zoo's).")
@click.option("--model", "model_name", default="default", show_default=True, help="Zoo name (`tpexplain models`).")
def explore(image, keypoint, max_queries, model_name, weights, bbox, flip, out):
    """One self-contained HTML page: click any point to see its dependency map at every layer."""
    from . import parse_keypoints, prepare
    from ..viz.explore import explore_page
    keypoints = parse_keypoints(keypoint)
    default_out = f"{Path(image).stem}_explore_{model_name}.html"
    pm, img, box, out_path = prepare(image, model_name, weights, bbox, out, default_out)
    ex = pm.explain(img, bbox=box, flip=flip)
    page = explore_page(ex, keypoints=keypoints, max_queries=max_queries, title=Path(image).name)
    click.echo(str(page.save(out_path)))
