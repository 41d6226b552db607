"""`tpexplain layers`, `occlusion` and `findings`: the analyses of `tpexplain.analysis` as commands.

`layers` and `occlusion` write their figure to -o and their numbers beside it (same name, .csv and .json),
print a table, and write nothing unless every output succeeds.
"""
from __future__ import annotations

import contextlib
import logging
import shlex
import sys
from pathlib import Path

import click

from .options import (annotate, at, box_option, check_outputs, check_person, choose, figure_options, keypoint_tag,
                      model_options, parse_keypoints, query)

log = logging.getLogger(__name__)


def _outputs(out: str | None, default: str, inputs: list, force: bool) -> tuple[Path, Path, Path]:
    """(figure, csv, json) paths, checked by the output policy before any work."""
    fig = Path(out or default)
    paths = (fig, fig.with_suffix(".csv"), fig.with_suffix(".json"))
    check_outputs(paths, inputs, force, ("figure", "csv", "json"))
    return paths


def _read(image: str, bbox: str | None):
    """The image and the person box (checked against the image)."""
    from ..io import parse_bbox, read_image
    img = read_image(image)
    return img, (parse_bbox(bbox, img.shape, "--bbox") if bbox else None)


def _write_all(paths: tuple[Path, Path, Path], fig, csv_text: str, json_text: str, inputs: list,
               force: bool) -> None:
    """Write the figure, CSV and JSON to temporary files; replace the real ones only if all three worked."""
    import matplotlib.pyplot as plt

    from ..figures import write_figure
    from ..io import atomic_path
    try:
        check_outputs(paths, inputs, force, ("figure", "csv", "json"))   # again: the work took a while
        with contextlib.ExitStack() as stack:
            tmp_fig, tmp_csv, tmp_json = (stack.enter_context(atomic_path(p)) for p in paths)
            writes = (lambda: write_figure(fig, tmp_fig, paths[0].suffix.lstrip(".").lower()),
                      lambda: tmp_csv.write_bytes(csv_text.encode("utf-8")),   # bytes: keep the CSV's \r\n
                      lambda: tmp_json.write_text(json_text, encoding="utf-8"))
            for path, write in zip(paths, writes):
                try:
                    write()
                except OSError as exc:     # name the output that failed (a full disk, ...)
                    raise OSError(f"could not write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


@click.command()
@click.argument("image", type=click.Path())
@click.option("--keypoint", "-k", required=True,
              help="Keypoint name of the model (l_wrist, left_wrist, head_top, ...), a comma list, or all.")
@click.option("--head", type=int, default=None, help="One attention head (default: the mean of heads).")
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Radius (crop pixels) for the near-query mass (default: a tenth of the person's size).")
@click.option("--on", "where", type=click.Choice(["crop", "image"]), default="crop", show_default=True,
              help="Draw over the model's input crop or the original image.")
@click.option("--scale", type=click.Choice(["panel", "shared", "absolute"]), default="shared", show_default=True,
              help="Colour scale of the maps: each panel its own range, one range for all, or 0..1 (1/N is "
                   "marked on the colour bars).")
@query
@at
@figure_options
def layers(image, keypoint, head, radius, where, scale, query, at, model_name, weights, flip, decode, bbox, person,
           coco, out, force):
    """How a keypoint's dependency map changes with depth: maps per layer, entropy, distance, local mass.

    Writes the figure to -o and the numbers beside it: the same name with .csv and .json (side outputs,
    under the same rules as -o).
    """
    from ..analysis.depth import layer_study
    from ..api import load
    keypoints = parse_keypoints(keypoint, model_name)
    check_person(person, coco)
    tag = keypoint_tag(keypoints, model_name)
    inputs = [image, weights, coco]
    paths = _outputs(out, f"{Path(image).stem}_{tag}_layers_{model_name}.png", inputs, force)
    img, _ = _read(image, bbox)          # a bad --bbox fails before the model loads
    pm = load(model_name, weights, decode=decode)
    chosen = choose(pm, img, image, bbox, coco, person, at)
    ex = pm.explain(img, bbox=chosen.box, flip=flip, query=query)
    annotate(ex, chosen, image, model_name, weights)
    study = layer_study(ex, keypoints, head=head, radius=radius, at=at)
    _write_all(paths, study.figure(where, scale=scale), study.to_csv(), study.to_json(), inputs, force)
    click.echo(study.table())
    click.echo(str(paths[0]))


@click.command()
@click.argument("image", type=click.Path())
@click.option("--keypoint", "-k", required=True,
              help="Keypoint name of the model; with --sweep also a comma list or all.")
@box_option("--region", "Hide this box (image pixels).")
@click.option("--part", default=None,
              help="Hide a keypoint (l_ankle) or a body part (head, torso, left_arm, right_arm, left_leg, right_leg), "
                   "placed from the predicted pose (--at gt: from the ground truth). Default without --region: the "
                   "keypoint itself.")
@click.option("--fill", type=click.Choice(["mean", "blur", "noise"]), default="mean", show_default=True)
@click.option("--sweep", is_flag=True, help="Occlusion-sensitivity map: slide a patch, record the peak drop.")
@click.option("--symmetric", is_flag=True, help="Hide the keypoint; measure the dependency moving to its mirror joint.")
@click.option("--window", type=click.IntRange(min=1), default=32, show_default=True,
              help="Sweep patch size (input-crop pixels).")
@click.option("--stride", type=click.IntRange(min=1), default=16, show_default=True,
              help="Sweep step (input-crop pixels).")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Sweep windows per forward pass.")
@click.option("--max-passes", type=click.IntRange(min=0), default=5000, show_default=True,
              help="Refuse a sweep of more forward passes than this (0: no bound); the count is printed first.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise fill.")
@at
@figure_options
def occlusion(image, keypoint, region, part, fill, sweep, symmetric, window, stride, batch_size, max_passes, seed, at,
              model_name, weights, flip, decode, bbox, person, coco, out, force):
    """Hide a region or body part and compare the prediction and its dependencies (or --sweep, --symmetric).

    Writes the figure to -o and the numbers beside it: the same name with .csv and .json (side outputs,
    under the same rules as -o).
    """
    from ..analysis.occlusion import occlusion_study, symmetric_study
    from ..analysis.sensitivity import occlusion_sensitivity
    from ..api import load
    from ..io import parse_bbox
    keypoints = parse_keypoints(keypoint, model_name)
    check_person(person, coco)
    if sweep and symmetric:
        raise click.UsageError("use --sweep or --symmetric, not both")
    if (sweep or symmetric) and (region is not None or part is not None):
        raise click.UsageError(f"--{'sweep' if sweep else 'symmetric'} chooses what to hide itself; "
                               "drop --region/--part")
    if not sweep and len(keypoints) != 1:
        raise click.UsageError("give one --keypoint (several or all only with --sweep)")
    if sweep and at == "gt":
        raise click.UsageError("--sweep hides every window in turn; --at gt is for the hidden joint or part")
    what = "sweep" if sweep else "symmetric" if symmetric else "occlusion"
    tag = keypoint_tag(keypoints, model_name)
    inputs = [image, weights, coco]
    paths = _outputs(out, f"{Path(image).stem}_{tag}_{what}_{model_name}.png", inputs, force)
    img, _ = _read(image, bbox)          # a bad --bbox fails before the model loads
    # a region beside the image is the hiding code's error ("covers no pixel"); a huge one is refused here
    hidden = parse_bbox(region, img.shape, "--region", overlap=False) if region is not None else None
    pm = load(model_name, weights, decode=decode)
    chosen = choose(pm, img, image, bbox, coco, person, at)
    box = chosen.box

    if sweep:
        sm = occlusion_sensitivity(pm, img, bbox=box, window=window, stride=stride, fill=fill,
                                   keypoints=keypoints, batch_size=batch_size, seed=seed, flip=flip,
                                   max_passes=max_passes or None, progress=True)
        if sm.explanation is not None:        # names image, person and model in the figure's title
            annotate(sm.explanation, chosen, image, model_name, weights)
        _write_all(paths, sm.figure(), sm.to_csv(), sm.to_json(), inputs, force)
        summary = sm.summary()
        rho = summary["rank_correlation_last_layer"]
        click.echo(f"{'keypoint':<11} {'clean peak':>10} {'max drop':>9} {'rho(attn)':>9}")
        for kp in sm.keypoints:
            click.echo(f"{kp:<11} {summary['clean_peak'][kp]:>10.4f} {summary['max_drop'][kp]:>9.4f} {rho[kp]:>9.3f}")
        click.echo(str(paths[0]))
        return

    if symmetric:
        study = symmetric_study(pm, img, keypoints[0], bbox=box, fill=fill, seed=seed, flip=flip,
                                ground_truth=chosen.ground_truth, at=at)["study"]
    else:
        study = occlusion_study(pm, img, keypoints[0], bbox=box, region=hidden, part=part, fill=fill,
                                seed=seed, flip=flip, ground_truth=chosen.ground_truth, at=at)
    annotate(study.before, chosen, image, model_name, weights)
    study.after.meta.update(study.before.meta)
    _write_all(paths, study.figure(), study.to_csv(), study.to_json(), inputs, force)
    click.echo(study.table())
    if study.symmetric is not None:
        sym = study.symmetric
        click.echo(f"mirror {sym['mirror']}: {sym['mirror_mass_before']:.3f} → {sym['mirror_mass_after']:.3f} "
                   f"(shift {sym['mirror_shift']:+.3f}); adjacent shift {sym['adjacent_shift']:+.3f}")
    click.echo(str(paths[0]))


def _command_line() -> str | None:
    """The command as typed, for the report (None when not run from a shell, e.g. under a test runner)."""
    script = Path(sys.argv[0])
    if "tpexplain" not in (script.name, script.parent.name):   # bin/tpexplain or python -m tpexplain
        return None
    return "tpexplain " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@click.command()
@click.option("--coco", default=None, help="COCO person-keypoints annotation file (keypoints matched to the model's "
              "by name: CrowdPose's 14 use the 12 COCO joints among them).")
@click.option("--images", default=None, help="Folder of the annotated images (with --coco).")
@click.option("--detections", default=None, metavar="DETS.json",
              help="COCO detection results: crop each annotated person with the best detection (score >= 0.5) "
                   "overlapping its box by IoU >= 0.5, as the official pipelines do (with --coco).")
@click.option("--synthetic", type=click.IntRange(min=1), default=None, metavar="N",
              help="Generate N images of synthetic people instead (tpexplain.training.synth).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic images, the random "
              "baselines (seed + 1) and the bootstrap.")
@click.option("--out", required=True, help="Report folder: new, empty, or an earlier findings report (replaced).")
@click.option("--max-people", type=click.IntRange(min=1), default=200, show_default=True,
              help="Analyse at most this many people (in file order).")
@click.option("--occlusion-people", type=click.IntRange(min=0), default=20, show_default=True,
              help="People for the costly occlusion parts (0: skip them); about 10 s each for the default "
                   "model and each of its two baselines, minutes each for TP-H models.")
@click.option("--bootstrap", "resamples", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap resamples over people for every interval.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Measure the people on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786); the "
                   "report is computed here. Needs pip install 'tpexplain[dask]' and the images shared.")
@model_options
def findings(coco, images, detections, synthetic, seed, out, max_people, occlusion_people, resamples, scheduler,
             model_name, weights, flip, decode):
    """Measure the TransPose paper's claims over many people, against random-weight baselines, with bootstrap
    intervals: OUT/report.md, report.html, figures/, findings.json."""
    from ..analysis.findings import check_report_dir, read_people, synthetic_findings
    from ..analysis.findings import findings as run
    from ..api import load
    from ..zoo import keypoint_names
    if synthetic is not None and (coco or images or detections):
        raise click.UsageError("give --coco ANN --images DIR [--detections DETS.json] or --synthetic N, not both")
    if synthetic is None and (not coco or not images):
        raise click.UsageError("give --coco ANN --images DIR (both) or --synthetic N")
    if synthetic is None:
        # a missing file, a bad annotation file or a keypoint set sharing no joint fails before loading
        read_people(coco, images, 1, keypoint_names(model_name))
        if detections:
            from ..io import read_detections
            read_detections(detections)
    check_report_dir(out)
    pm = load(model_name, weights, decode=decode)
    kwargs = {"max_people": max_people, "occlusion_people": occlusion_people, "flip": flip, "seed": seed,
              "command": _command_line(), "resamples": resamples}
    if scheduler:
        from ..batch.executors import PeopleOnCluster
        kwargs["map_people"] = PeopleOnCluster(scheduler)   # an unreachable cluster fails here
    if synthetic is not None:
        result = synthetic_findings(pm, synthetic, out, **kwargs)
    else:
        result = run(pm, coco, images, out, detections=detections, **kwargs)
    for c in result.claims:
        value = "n/a" if c.value is None or c.value != c.value else f"{c.value:.3g}"
        interval = "" if c.interval[0] != c.interval[0] else f" [{c.interval[0]:.3g}, {c.interval[1]:.3g}]"
        log.info(f"{c.id:<36} {value:>8}{interval:<18}  {c.verdict}")
    click.echo(str(Path(out) / "report.md"))
