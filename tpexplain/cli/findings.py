"""`tpexplain findings`: the paper's claims measured over a set of people, as a report folder."""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click


class _OneLineCommand(click.Command):
    """Bad options become a one-line error like every other failure (the group prints it), not a usage page."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.Exit:
            raise
        except click.UsageError as exc:
            raise ValueError(exc.format_message()) from None


def _progress():
    """Progress lines on stderr: at most one every 2 s per stage, plus each stage's last step."""
    last = {"t": 0.0, "stage": None}

    def show(stage: str, done: int, total: int) -> None:
        now = time.time()
        if stage != last["stage"] or done >= total or now - last["t"] >= 2.0:
            click.echo(f"[findings] {stage} {done}/{total}", err=True)
            last["t"], last["stage"] = now, stage
    return show


@click.command(cls=_OneLineCommand)
@click.option("--coco", default=None, help="COCO person-keypoints annotation file.")
@click.option("--images", default=None, help="Folder of the annotated images (with --coco).")
@click.option("--synthetic", type=click.IntRange(min=1), default=None, metavar="N",
              help="Generate N images of synthetic people instead (tpexplain.training.synth).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic images and of the "
              "randomisation test.")
@click.option("--out", required=True, help="Report folder: new, empty, or an earlier findings report (replaced).")
@click.option("--model", "model_name", default="default", show_default=True, help="Zoo name (`tpexplain models`).")
@click.option("--weights", default=None, help="Checkpoint file (default: the zoo's; 'random' for random weights).")
@click.option("--max-people", type=click.IntRange(min=1), default=200, show_default=True,
              help="Analyse at most this many people (in file order).")
@click.option("--occlusion-people", type=click.IntRange(min=0), default=20, show_default=True,
              help="People for the costly occlusion and randomisation parts (0: skip them); about 10 s "
                   "each for the default model, minutes each for TP-H models.")
@click.option("--flip/--no-flip", default=True, show_default=True,
              help="Flip test: average with the mirrored input's heatmaps.")
def findings(coco, images, synthetic, seed, out, model_name, weights, max_people, occlusion_people, flip):
    """Measure the TransPose paper's claims over many people: OUT/report.md, report.html, figures/, findings.json."""
    from ..analysis.findings import check_report_dir, findings as run, read_people, synthetic_findings
    from ..api import load
    if synthetic is not None and (coco or images):
        raise ValueError("give --coco ANN --images DIR or --synthetic N, not both")
    if synthetic is None:
        if not coco or not images:
            raise ValueError("give --coco ANN --images DIR (both) or --synthetic N")
        read_people(coco, images, 1)          # a missing file or a bad annotation file fails before loading
    if weights and weights != "random" and not Path(weights).is_file():
        raise ValueError(f"weights file not found: {weights}")
    check_report_dir(out)
    pm = load(model_name, weights)
    command = "tpexplain findings " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "findings" else None
    kwargs = dict(max_people=max_people, occlusion_people=occlusion_people, flip=flip, seed=seed,
                  progress=_progress(), command=command)
    if synthetic is not None:
        result = synthetic_findings(pm, synthetic, out, **kwargs)
    else:
        result = run(pm, coco, images, out, **kwargs)
    for c in result.claims:
        value = "n/a" if c.value is None or c.value != c.value else f"{c.value:.3g}"
        click.echo(f"{c.id:<36} {value:>8}  {c.verdict}", err=True)
    click.echo(str(Path(out) / "report.md"))
