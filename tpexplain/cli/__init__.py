"""The `tpexplain` command: a thin layer over the Python API."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..keypoints import COCO_KEYPOINTS, keypoint_index


class _Group(click.Group):
    """Turns any failure into a one-line error and exit status 1 (set TPEXPLAIN_DEBUG=1 for tracebacks)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # the CLI boundary: never show a traceback to a user
            if os.environ.get("TPEXPLAIN_DEBUG"):
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"Error: {msg}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tpexplain")
def main() -> None:
    """See why a transformer pose estimator put a keypoint where it did."""
    import matplotlib
    matplotlib.use("Agg")  # the CLI only writes files; never open a window


def model_options(f):
    """--model, --weights, --bbox, --flip/--no-flip and -o: shared by every figure command."""
    f = click.option("-o", "--out", "out", type=click.Path(dir_okay=False), default=None,
                     help="Output file (default: derived from the image name, in the current folder).")(f)
    f = click.option("--flip/--no-flip", default=True, show_default=True,
                     help="Flip test: average with the mirrored input's heatmaps.")(f)
    f = click.option("--bbox", default=None, metavar="X,Y,W,H", help="Person box in image pixels (default: whole image).")(f)
    f = click.option("--weights", default=None, type=click.Path(), help="Checkpoint file (default: the zoo's).")(f)
    f = click.option("--model", "model_name", default="default", show_default=True, help="Zoo name (`tpexplain models`).")(f)
    return f


def parse_keypoints(text: str) -> list[str]:
    """'all' or a comma-separated list of keypoint names; unknown names fail with suggestions."""
    if text.strip().lower() == "all":
        return list(COCO_KEYPOINTS)
    return [COCO_KEYPOINTS[keypoint_index(t)] for t in text.split(",") if t.strip()]


def parse_layers(text: str, num_layers: int) -> list[int]:
    """'last', 'all', or 1-based layer numbers separated by commas → 0-based indices."""
    t = text.strip().lower()
    if t == "last":
        return [num_layers - 1]
    if t == "all":
        return list(range(num_layers))
    out = []
    for part in t.split(","):
        try:
            n = int(part)
        except ValueError:
            raise ValueError(f"bad --layer '{text}': use 1..{num_layers}, last or all") from None
        if not 1 <= n <= num_layers:
            raise ValueError(f"--layer {n} out of range: the model has {num_layers} encoder layers (1..{num_layers})")
        out.append(n - 1)
    return out


def prepare(image: str, model_name: str, weights: str | None, bbox: str | None, out: str | None, default_out: str):
    """Validate everything cheap first (paths, box), then load the model: (pose_model, image, box, out)."""
    from ..api import load
    from ..io import check_writable, parse_bbox, read_image
    out_path = check_writable(out or default_out)
    img = read_image(image)
    box = parse_bbox(bbox, img.shape) if bbox else None
    return load(model_name, weights), img, box, out_path


@main.command()
@click.argument("image", type=click.Path())
@click.option("--keypoint", "-k", required=True, help="Keypoint name (l_ankle, left_ankle, ...), a comma list, or all.")
@click.option("--layer", default="last", show_default=True, help="Encoder layer 1..L, last, or all.")
@click.option("--mode", type=click.Choice(["dependency", "affected"]), default="dependency", show_default=True)
@click.option("--head", type=int, default=None, help="One attention head (default: the mean of heads).")
@click.option("--on", "where", type=click.Choice(["crop", "image"]), default="crop", show_default=True,
              help="Draw over the model's input crop or the original image.")
@model_options
def attention(image, keypoint, layer, mode, head, where, model_name, weights, bbox, flip, out):
    """Dependency (or affected-area) map of a keypoint: where the prediction looks."""
    from ..figures import save_figure
    keypoints = parse_keypoints(keypoint)
    tag = "all" if len(keypoints) == len(COCO_KEYPOINTS) else "-".join(keypoints)
    default_out = f"{Path(image).stem}_{tag}_{mode}_{model_name}.png"
    pm, img, box, out_path = prepare(image, model_name, weights, bbox, out, default_out)
    layers = parse_layers(layer, _num_layers(pm))
    ex = pm.explain(img, bbox=box, flip=flip)
    if len(keypoints) == 1 and len(layers) == 1:
        fig = ex.attention_map(mode, keypoints[0], layers[0], head).figure(where)
    else:
        fig = ex.grid(keypoints, layers, mode, head, where)
    save_figure(fig, out_path)
    click.echo(str(out_path))


def _num_layers(pm) -> int:
    from ..record import attention_modules
    return len(attention_modules(pm.model))


@main.command()
def models():
    """List the model zoo and which checkpoints are present."""
    from .. import zoo
    rows = []
    for name, e in zoo.manifest().items():
        present = zoo.checkpoint_path(name) is not None
        rows.append((name, e["arch"], "yes" if present else "no", e.get("description", "")))
    w = max(len(r[0]) for r in rows)
    click.echo(f"{'name':<{w}}  {'arch':<12} weights  description")
    zoo_entries = zoo.manifest()
    for name, arch, present, desc in rows:
        click.echo(f"{name:<{w}}  {arch:<12} {present:<8} {desc}")
        source = zoo_entries[name].get("source")
        if source:
            click.echo(f"{'':<{w}}  source: {source}")
    click.echo(f"\ndownloaded checkpoints: {zoo.checkpoints_dir()} (set TPEXPLAIN_HOME to move it)")


@main.command()
@click.argument("name")
@click.option("--url", default=None, help="Download from this address instead of the manifest's.")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default=None,
              help="Where to put the file (default: the models folder).")
@click.option("--force", is_flag=True, help="Download even if the file is already there.")
@click.option("--sha256", "sha", default=None, help="Expected sha256 (default: the manifest's, where known).")
def download(name, url, folder, force, sha):
    """Fetch an official checkpoint into the models folder and check it."""
    from ..zoo.download import download_checkpoint
    path = download_checkpoint(name, url=url, folder=folder, force=force, sha=sha, log=lambda m: click.echo(m, err=True))
    click.echo(str(path))


@main.command()
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--max-people", type=click.IntRange(1, 8), default=3, show_default=True)
def synth(n, seed, out, max_people):
    """Generate synthetic people in COCO person-keypoints format (OUT/images, OUT/annotations.json)."""
    from ..training import synth as synth_mod
    path = synth_mod.make_dataset(out, n, seed, max_people=max_people)
    click.echo(str(path))


@main.command()
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
def train(model_name, coco, images, iters, batch_size, lr, warmup, seed, workers, out, export, save_every, resume,
          bf16, threads):
    """Train a model (default: the bundled default model's recipe on synthetic people)."""
    from ..training.train import train as run
    if coco and not images:
        raise click.UsageError("--coco needs --images")
    run(model_name, out, iters, batch_size, lr, warmup, seed, workers, coco, images, resume, save_every, export,
        threads=threads, bf16=bf16, log=lambda m: click.echo(m, err=True))


@main.command("eval")
@click.option("--coco", required=True, type=click.Path(), help="COCO person-keypoints annotation file.")
@click.option("--images", required=True, type=click.Path(), help="Folder of the annotated images.")
@click.option("--model", "model_name", default="default", show_default=True)
@click.option("--weights", default=None, type=click.Path())
@click.option("--flip/--no-flip", default=True, show_default=True)
@click.option("--per-keypoint", is_flag=True,
              help="Also print, per keypoint type, the mean OKS of visible and occluded labels and the "
                   "left/right swap rate.")
def evaluate_cmd(coco, images, model_name, weights, flip, per_keypoint):
    """COCO keypoint AP with ground-truth boxes; the last line is AP=<value>."""
    from ..api import load
    from ..training.evaluate import breakdown_table, evaluate
    for p, what in ((coco, "annotation file"), (images, "image folder")):
        if not Path(p).exists():
            raise ValueError(f"{what} not found: {p}")
    m = evaluate(load(model_name, weights), coco, images, flip=flip, log=click.echo)
    if per_keypoint and "per_keypoint" in m:
        click.echo(breakdown_table(m["per_keypoint"]))
    click.echo(f"PCK@{0.1:g} visible={m['PCK_visible']:.4f} ({m['num_visible']})  "
               f"occluded={m['PCK_occluded']:.4f} ({m['num_occluded']})")
    click.echo(f"AP={m['AP']:.4f}")

from .batch import batch, explore; main.add_command(batch); main.add_command(explore)  # noqa: E402,E702
from .tokens import kp_attention; main.add_command(kp_attention)  # noqa: E402,E702
from .analysis import layers, occlusion; main.add_command(layers); main.add_command(occlusion)  # noqa: E402,E702
from .findings import findings; main.add_command(findings)  # noqa: E402,E702

if __name__ == "__main__":
    main()
