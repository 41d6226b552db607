"""`tpexplain batch`: figures for every image of a folder or every person of a COCO file."""
from __future__ import annotations

import logging

import click

from .options import box_option, model_options, parse_keypoints, query

log = logging.getLogger(__name__)


@click.command()
@click.argument("folder", required=False, type=click.Path())
@click.option("--boxes", default=None, type=click.Path(),
              help="Person boxes for FOLDER's images: JSON {image: [[x,y,w,h], ...]} or CSV image,x,y,w,h.")
@click.option("--whole-image", is_flag=True,
              help="FOLDER without --boxes: take each image whole as one person (default: every person the "
                   "detector finds, as single-image commands do).")
@click.option("--coco", default=None, type=click.Path(), help="COCO person-keypoints file: every annotated person.")
@click.option("--images", default=None, type=click.Path(), help="Folder of the COCO file's images.")
@click.option("--detections", default=None, type=click.Path(),
              help="COCO detection results (image_id, category_id, bbox, score) on --coco's images: explain "
                   "the detected people, as the official pipelines take them, each with the ground truth it "
                   "overlaps (IoU >= 0.5).")
@click.option("--min-score", type=click.FloatRange(min=0.0), default=0.5, show_default=True,
              help="--detections: leave out detections scoring below this.")
@click.option("--at", "at", type=click.Choice(["pred", "gt"]), default="pred", show_default=True,
              help="Query the keypoint at its predicted position or its ground-truth one (needs --coco).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--figures", default="attention", show_default=True,
              help="Comma list of figure kinds: attention, layers, occlusion.")
@click.option("--keypoint", "-k", default="all", show_default=True,
              help="attention/layers: keypoint names of the model (comma list) or all.")
@click.option("--layer", default="last", show_default=True, help="attention: encoder layer 1..L, last, or all.")
@click.option("--mode", type=click.Choice(["dependency", "affected"]), default="dependency", show_default=True,
              help="attention: attention row (dependency) or column (affected area).")
@click.option("--head", type=int, default=None, help="attention/layers: one head (default: mean of heads).")
@click.option("--on", "where", type=click.Choice(["crop", "image"]), default="crop", show_default=True,
              help="attention: draw over the input crop or the original image.")
@click.option("--occlude-keypoint", default="l_ankle", show_default=True,
              help="occlusion: the keypoint whose prediction is studied.")
@click.option("--part", default=None, help="occlusion: named body part to hide (default: around the keypoint).")
@box_option("--region", "occlusion: image box to hide instead of a part.")
@click.option("--fill", type=click.Choice(["mean", "blur", "noise"]), default="mean", show_default=True,
              help="occlusion: what the hidden region is filled with.")
@query
@model_options
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: every core).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786), not on this "
                   "machine; needs pip install 'tpexplain[dask]' and the paths shared with the workers.")
@click.option("--dpi", type=click.IntRange(min=20), default=120, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["png", "jpg", "svg", "pdf"]), default="png", show_default=True)
@click.option("--force", is_flag=True, help="Redo every output, even complete ones.")
@click.option("--no-progress", is_flag=True, help="No progress bar (-q also hides it).")
@click.pass_context
def batch(ctx, folder, boxes, whole_image, coco, images, detections, min_score, at, out_dir, figures, keypoint, layer, mode,
          head, where, occlude_keypoint, part, region, fill, query, model_name, weights, flip, decode, jobs, dpi, fmt,
          force, no_progress, scheduler):
    """Figures for every person of FOLDER's images (found by the person detector, or per --boxes) or every person of a --coco file (or of
    its --detections), with the ground truth drawn and each person's OKS and PCK in the manifest.

    Every image and annotation of the input is accounted for: made, failed or not explained, with why.

    Resumable: a re-run skips complete outputs (same person, box, options and weights, file unchanged).
    A person whose worker dies is retried on a fresh worker (twice at most). Writes OUT/manifest.jsonl and
    OUT/index.html, or nothing when every figure failed; the exit status is 1 when any figure failed.
    """
    from ..batch import FigureOptions, coco_items, folder_items, run_batch
    from ..io import check_output_dir, parse_bbox
    if bool(folder) == bool(coco):
        raise click.UsageError("give an image FOLDER or --coco ANN --images DIR (one of them)")
    if coco and not images:
        raise click.UsageError("--coco needs --images")
    if boxes and not folder:
        raise click.UsageError("--boxes goes with an image FOLDER")
    if whole_image and (boxes or not folder):
        raise click.UsageError("--whole-image goes with an image FOLDER and no --boxes")
    if detections and not coco:
        raise click.UsageError("--detections needs --coco ANN (its image list) and --images DIR")
    if at == "gt" and not coco:
        raise click.UsageError("--at gt needs ground truth: --coco ANN --images DIR")
    keypoints = parse_keypoints(keypoint, model_name)
    occluded = parse_keypoints(occlude_keypoint, model_name, "--occlude-keypoint")
    if len(occluded) != 1:
        raise click.BadParameter("give one keypoint", param_hint="'--occlude-keypoint'")
    check_output_dir(out_dir, "--out", parents=True)
    from ..zoo import keypoint_names
    items = (coco_items(coco, images, keypoint_names(model_name), detections, min_score) if coco
             else folder_items(folder, boxes, whole_image, progress=not no_progress))
    figure_options = FigureOptions(
        keypoints=tuple(keypoints), layers=layer, mode=mode, head=head, where=where,
        occlusion_keypoint=occluded[0], part=part, region=parse_bbox(region, name="--region") if region else None,
        fill=fill,
        flip=flip, decode=decode, query=query, at=at, dpi=dpi, format=fmt)
    summary = run_batch(items, figures.split(","), out_dir, model_name, weights, jobs, figure_options,
                        force=force, progress=not no_progress, scheduler=scheduler)
    log.info(str(summary))
    if summary.index:           # "" when every figure failed and nothing was written
        click.echo(summary.index)
    if summary.failed:
        ctx.exit(1)
