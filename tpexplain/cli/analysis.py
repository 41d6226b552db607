"""`tpexplain layers` and `tpexplain occlusion`: the layer-depth and occlusion analyses as commands.

Each writes its figure to -o and its numbers beside it (same name, .csv and .json), prints a table, and
writes nothing unless every output succeeds.
"""
from __future__ import annotations

import contextlib
import csv
import sys
from pathlib import Path

import click

# `python -m tpexplain.cli` runs cli.py as __main__; importing `.cli` would run it a second time, whose last
# lines import this module while it is half-initialised. Reuse the running module instead.
_running = sys.modules.get("__main__")
if getattr(getattr(_running, "__spec__", None), "name", None) == "tpexplain.cli":
    sys.modules.setdefault("tpexplain.cli", _running)

from . import model_options, parse_keypoints  # noqa: E402
from ..keypoints import COCO_KEYPOINTS  # noqa: E402

FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def _outputs(out: str | None, default: str) -> tuple[Path, Path, Path]:
    """(figure, csv, json) paths, checked writable before any work."""
    from ..io import check_writable
    fig = Path(out or default)
    fmt = fig.suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"output '{fig}' must end in one of .{', .'.join(FIGURE_FORMATS)}")
    paths = (fig, fig.with_suffix(".csv"), fig.with_suffix(".json"))
    for p in paths:
        check_writable(p)
    return paths


def _prepare(image: str, bbox: str | None):
    from ..io import parse_bbox, read_image
    img = read_image(image)
    return img, (parse_bbox(bbox, img.shape) if bbox else None)


def _write_all(paths: tuple[Path, Path, Path], fig, write_csv, write_json) -> None:
    """Write the figure, CSV and JSON to temporary files; replace the real ones only if all three worked."""
    import matplotlib.pyplot as plt

    from ..io import atomic_path
    try:
        with contextlib.ExitStack() as stack:
            tmp_fig, tmp_csv, tmp_json = (stack.enter_context(atomic_path(p)) for p in paths)
            fig.savefig(tmp_fig, dpi=150, bbox_inches="tight", format=paths[0].suffix.lstrip(".").lower())
            write_csv(tmp_csv)
            write_json(tmp_json)
    finally:
        plt.close(fig)


def _tag(keypoints: list[str]) -> str:
    return "all" if len(keypoints) == len(COCO_KEYPOINTS) else "-".join(keypoints)


def _load(model_name: str, weights: str | None):
    from ..api import load
    return load(model_name, weights)


def _check_head(pm, head: int | None) -> None:
    if head is None:
        return
    n = pm.num_heads
    if not 0 <= head < n:
        raise ValueError(f"--head {head} out of range: the model has {n} heads (0..{n - 1})")


@click.command()
@click.argument("image", type=click.Path())
@click.option("--keypoint", "-k", required=True, help="Keypoint name (l_wrist, left_wrist, ...), a comma list, or all.")
@click.option("--head", type=int, default=None, help="One attention head (default: the mean of heads).")
@click.option("--radius", type=float, default=None,
              help="Radius (crop pixels) for the near-query mass (default: a tenth of the person's size).")
@click.option("--on", "where", type=click.Choice(["crop", "image"]), default="crop", show_default=True,
              help="Draw over the model's input crop or the original image.")
@model_options
def layers(image, keypoint, head, radius, where, model_name, weights, bbox, flip, out):
    """How a keypoint's dependency map changes with depth: maps per layer, entropy, distance, local mass."""
    from ..analysis.depth import layer_study
    keypoints = parse_keypoints(keypoint)
    if not keypoints:
        raise ValueError("--keypoint is empty: give a keypoint name, a comma list, or all")
    if radius is not None and not radius > 0:
        raise ValueError(f"--radius must be a positive number of pixels, got {radius:g}")
    paths = _outputs(out, f"{Path(image).stem}_{_tag(keypoints)}_layers_{model_name}.png")
    img, box = _prepare(image, bbox)
    pm = _load(model_name, weights)
    _check_head(pm, head)
    ex = pm.explain(img, bbox=box, flip=flip)
    study = layer_study(ex, keypoints, head=head, radius=radius)
    _write_all(paths, study.figure(where), study.to_csv, study.to_json)
    click.echo(study.table())
    click.echo(str(paths[0]))


def _parse_region(text: str, shape) -> tuple[float, float, float, float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"bad --region '{text}': expected four numbers x,y,w,h in image pixels") from None
    from ..analysis.occlusion import region_mask
    region_mask(shape, (x, y, w, h))
    return x, y, w, h


@click.command()
@click.argument("image", type=click.Path())
@click.option("--keypoint", "-k", required=True,
              help="Keypoint name; with --sweep also a comma list or all.")
@click.option("--region", default=None, metavar="X,Y,W,H", help="Hide this box (image pixels).")
@click.option("--part", default=None,
              help="Hide a keypoint (l_ankle) or a body part (head, torso, left_arm, right_arm, left_leg, right_leg), "
                   "placed from the predicted pose. Default without --region: the keypoint itself.")
@click.option("--fill", type=click.Choice(["mean", "blur", "noise"]), default="mean", show_default=True)
@click.option("--sweep", is_flag=True, help="Occlusion-sensitivity map: slide a patch, record the peak drop.")
@click.option("--symmetric", is_flag=True, help="Hide the keypoint; measure the dependency moving to its mirror joint.")
@click.option("--window", type=int, default=32, show_default=True, help="Sweep patch size (input-crop pixels).")
@click.option("--stride", type=int, default=16, show_default=True, help="Sweep step (input-crop pixels).")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Sweep windows per forward pass.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise fill.")
@model_options
def occlusion(image, keypoint, region, part, fill, sweep, symmetric, window, stride, batch_size, seed,
              model_name, weights, bbox, flip, out):
    """Hide a region or body part and compare the prediction and its dependencies (or --sweep, --symmetric)."""
    from ..analysis import occlusion as occ
    keypoints = parse_keypoints(keypoint)
    if not keypoints:
        raise ValueError("--keypoint is empty: give a keypoint name")
    if sweep and symmetric:
        raise ValueError("use --sweep or --symmetric, not both")
    if region is not None and part is not None:
        raise ValueError("use --region or --part, not both")
    if (sweep or symmetric) and (region is not None or part is not None):
        raise ValueError(f"--{'sweep' if sweep else 'symmetric'} chooses what to hide itself; drop --region/--part")
    if not sweep and len(keypoints) != 1:
        raise ValueError("give one --keypoint (several or all only with --sweep)")
    if sweep:
        if window < 1 or stride < 1 or batch_size < 1:
            raise ValueError("--window, --stride and --batch-size must be positive")
        if stride > window:
            raise ValueError(f"--stride {stride} must not exceed --window {window}")
    if symmetric:
        from ..keypoints import flip_index, keypoint_index
        k = keypoint_index(keypoints[0])
        if flip_index(k) == k:
            raise ValueError(f"'{keypoints[0]}' has no mirror joint; --symmetric needs a left or right keypoint")
    if part is not None:
        occ._part_joints(part, COCO_KEYPOINTS)
    what = "sweep" if sweep else "symmetric" if symmetric else "occlusion"
    paths = _outputs(out, f"{Path(image).stem}_{_tag(keypoints)}_{what}_{model_name}.png")
    img, box = _prepare(image, bbox)
    region_box = _parse_region(region, img.shape) if region is not None else None
    pm = _load(model_name, weights)

    if sweep:
        sm = occ.occlusion_sensitivity(pm, img, bbox=box, window=window, stride=stride, fill=fill,
                                       keypoints=keypoints, batch_size=batch_size, seed=seed, flip=flip)
        summary = sm.summary()
        rho = summary["rank_correlation_last_layer"]

        def write_csv(path):
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["keypoint", "row", "col", "y", "x", "window", "drop"])
                for i, kp in enumerate(sm.keypoints):
                    for r, y in enumerate(sm.starts_y):
                        for c, x in enumerate(sm.starts_x):
                            w.writerow([kp, r, c, y, x, sm.window, f"{sm.drops[i, r, c]:.6g}"])

        _write_all(paths, sm.figure(), write_csv, sm.to_json)
        click.echo(f"{'keypoint':<11} {'clean peak':>10} {'max drop':>9} {'rho(attn)':>9}")
        for kp in sm.keypoints:
            click.echo(f"{kp:<11} {summary['clean_peak'][kp]:>10.4f} {summary['max_drop'][kp]:>9.4f} {rho[kp]:>9.3f}")
        click.echo(str(paths[0]))
        return

    if symmetric:
        result = occ.symmetric_study(pm, img, keypoints[0], bbox=box, fill=fill, seed=seed, flip=flip)
        study = result.pop("study")
    else:
        study = occ.occlusion_study(pm, img, keypoints[0], bbox=box, region=region_box, part=part, fill=fill,
                                    seed=seed, flip=flip)
        result = None

    def write_csv(path):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["region", "mass_before", "mass_after", "shift"])
            for r in occ.REGIONS:
                b, a = study.masses_before[r], study.masses_after[r]
                w.writerow([r, f"{b:.6g}", f"{a:.6g}", f"{a - b:.6g}"])

    def write_json(path):
        import json
        data = study.summary()
        if result is not None:
            data["symmetric"] = {k: v for k, v in result.items() if not isinstance(v, dict)}
        Path(path).write_text(json.dumps(data, indent=1))

    _write_all(paths, study.figure(), write_csv, write_json)
    click.echo(study.table())
    if result is not None:
        click.echo(f"mirror {result['mirror']}: {result['mirror_mass_before']:.3f} → "
                   f"{result['mirror_mass_after']:.3f} (shift {result['mirror_shift']:+.3f}); "
                   f"adjacent shift {result['adjacent_shift']:+.3f}")
    click.echo(str(paths[0]))
