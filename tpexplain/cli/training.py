"""`tpexplain synth`, `train` and `eval`: synthetic data, training a zoo architecture, COCO keypoint AP."""
from __future__ import annotations

from pathlib import Path

import click

from .options import model_options


@click.command()
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--max-people", type=click.IntRange(1, 8), default=3, show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing dataset in OUT (annotations.json, images).")
def synth(n, seed, out, max_people, force):
    """Generate synthetic people in COCO person-keypoints format (OUT/images, OUT/annotations.json).

    An existing dataset in OUT is never replaced without --force.
    """
    from ..training.synth import make_dataset
    click.echo(str(make_dataset(out, n, seed, max_people=max_people, force=force)))


@click.command()
@click.option("--model", "model_name", default="default", show_default=True, help="Zoo architecture to train.")
@click.option("--coco", default=None, type=click.Path(exists=True, dir_okay=False),
              help="COCO person-keypoints file (default: synthetic people generated on the fly).")
@click.option("--images", default=None, type=click.Path(exists=True, file_okay=False))
@click.option("--iters", type=click.IntRange(min=1), default=4000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="runs/default", show_default=True)
@click.option("--export", type=click.Path(dir_okay=False), default=None,
              help="Also write the weights alone here at every checkpoint (e.g. models/default.pth).")
@click.option("--save-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pth.")
@click.option("--bf16/--no-bf16", default=None,
              help="bfloat16 autocast for the forward pass (default: on exactly when the CPU has native "
                   "bfloat16, AVX512-BF16 or AMX, where it is ~1.6x faster; emulated elsewhere, ~10x slower).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads (default: all cores; 1 is faster on a machine busy with other work).")
@click.option("--force", is_flag=True, help="Let --export replace a file that is not a PyTorch checkpoint.")
def train(model_name, coco, images, iters, batch_size, lr, warmup, seed, workers, out, export, save_every, resume,
          bf16, threads, force):
    """Train a model (default: the bundled default model's recipe on synthetic people).

    Writes OUT/last.pth (and --export, a .pth or .pt file); an existing file there is replaced only if it
    is a PyTorch checkpoint (or with --force).
    """
    from ..io import check_output, check_output_dir, require_regular_file
    from ..training.train import train as run
    if coco and not images:
        raise click.UsageError("--coco needs --images")
    if check_output_dir(out, "--out", parents=True).is_dir():      # train makes a new folder itself
        check_output(Path(out) / "last.pth", [coco], kind="checkpoint", option="--out's checkpoint")
    if export:
        check_output(export, [coco], kind="checkpoint", force=force, option="--export")
    if coco:
        require_regular_file(coco, "annotation file")
    run(model_name, out, iters, batch_size, lr, warmup, seed, workers, coco, images, resume, save_every, export,
        threads=threads, bf16=bf16)


@click.command("eval")
@click.option("--coco", required=True, type=click.Path(), help="COCO person-keypoints annotation file.")
@click.option("--images", required=True, type=click.Path(), help="Folder of the annotated images.")
@click.option("--detections", default=None, type=click.Path(),
              help="COCO detection results (image_id, category_id, bbox, score) to take person boxes from, "
                   "as the official validation does, instead of the ground-truth boxes.")
@model_options
@click.option("--per-keypoint", is_flag=True,
              help="Also print, per keypoint type, the mean OKS of visible and occluded labels and the "
                   "left/right swap rate (ground-truth boxes).")
def evaluate(coco, images, detections, model_name, weights, flip, decode, per_keypoint):
    """COCO keypoint AP as the official TransPose/HRNet validation; the last line is AP=<value>.

    An image that is missing or unreadable is skipped with a warning but stays in the evaluation: its
    people count as not detected (the AP line says how many), and the exit status is 1.
    """
    from ..api import load
    from ..training.evaluate import breakdown_table
    from ..training.evaluate import evaluate as run
    # pycocotools' own message for a missing file is a bare errno; check before the model loads
    for p, what in ((coco, "annotation file"), (images, "image folder"), (detections, "detections file")):
        if p is not None and not Path(p).exists():
            raise ValueError(f"{what} not found: {p}")
    m = run(load(model_name, weights, decode=decode), coco, images, flip=flip, detections=detections)
    click.echo(m["summary"])
    if per_keypoint and "per_keypoint" in m:
        click.echo(breakdown_table(m["per_keypoint"]))
    if "PCK_visible" in m:
        click.echo(f"PCK@{0.1:g} visible={m['PCK_visible']:.4f} ({m['num_visible']})  "
                   f"occluded={m['PCK_occluded']:.4f} ({m['num_occluded']})")
    if not m["skipped"]:
        click.echo(f"AP={m['AP']:.4f}")
        return
    n = len(m["skipped"])
    click.echo(f"skipped {n} of {n + m['num_images']} images (not found or unreadable): "
               f"{', '.join(m['skipped'][:3])}" + (", ..." if n > 3 else ""))
    # the unread images stay in the evaluation (as COCOeval's imgIds): their people count as not detected
    click.echo(f"AP={m['AP']:.4f} over all {m['num_annotated']} annotated people: the {m['num_unread']} on the "
               f"{n} image{'s' if n != 1 else ''} that could not be read count as not detected")
    click.get_current_context().exit(1)        # as batch: a well-formed run that could not read every input
