"""The findings report: the TransPose paper's claims about its attention, measured over many people."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

from ...api import PoseModel
from ...keypoints import COCO_KEYPOINTS, PCK_ALPHA
from ...progress import progress as progress_bar
from ..sanity import model_randomisation
from ..stats import sign_test
from .claims import Claim, Findings, all_claims, map_statistics, numbers
from .measure import measure_occlusion, measure_people
from .people import Person, load_image, make_synthetic_people, read_people
from .report import check_report_dir, write_report

__all__ = ["findings", "synthetic_findings", "read_people", "check_report_dir", "Findings", "Claim", "Person",
           "sign_test"]

_UNITS = {"people": "people", "occlusion": "people", "randomisation": "steps", "writing": "reports"}


def findings(pose_model: PoseModel, annotations: str | Path, images: str | Path, out_dir: str | Path,
             max_people: int | None = 200, occlusion_people: int = 20, flip: bool = True,
             window: int = 32, stride: int = 16, seed: int = 0,
             progress: bool | Callable[[str, int, int], None] | None = True, data_note: str | None = None,
             command: str | None = None) -> Findings:
    """Measure every claim over the people of a COCO person-keypoints file and write the report to `out_dir`.

        f = findings(load("default"), "person_keypoints.json", "images/", "report/")
        f.verdicts()          # {"activation_max_on_keypoint": "holds", ...}

    Every person is cropped with its ground-truth box; the queries are the model's PREDICTED keypoints (the
    paper's activation-maximum view), and only keypoints labelled in the ground truth (v > 0) are queried.
    Accuracy uses the ground-truth keypoints and visibility flags (v=2 visible, v=1 labelled but occluded).
    Body regions (own joint, mirror joint, neighbours, head, rest of the body) are drawn around the
    ground-truth joints where they are labelled and around the predicted ones elsewhere, so "on the head"
    means on the real head even when the prediction is off. Each claim's statistic and criterion are fixed
    in `claims.py` before any result is seen; the report never adjusts a criterion to a model.

    `max_people` bounds the set (file order); the occlusion-based parts (hidden keypoints, occlusion
    sensitivity, randomisation) run on the first `occlusion_people` analysed people, since they cost many
    forward passes (0 skips them: those claims are "not measured"). `progress`: True shows
    `tpexplain.progress` bars (log lines when not on a terminal), False or None nothing; a callable
    `progress(stage, done, total)` is called instead of the bars (kept for older callers).

    Output (written into a temporary folder beside `out_dir`, then moved into place, so an interrupted run
    leaves no half-written report): report.md, report.html (figures embedded), figures/*.png, findings.json.
    """
    if tuple(pose_model.keypoint_names) != COCO_KEYPOINTS:
        raise ValueError(f"the findings need a model that predicts the 17 COCO keypoints; {pose_model.name} "
                         f"predicts {len(pose_model.keypoint_names)} others")
    if max_people is not None and max_people < 1:
        raise ValueError(f"max_people must be at least 1, got {max_people}")
    if occlusion_people < 0:
        raise ValueError(f"occlusion_people must be 0 or more, got {occlusion_people}")
    out = check_report_dir(out_dir)
    people = read_people(annotations, images, max_people)
    started = time.time()
    with _Stages(progress) as report:
        cache: dict = {}
        m = measure_people(pose_model, people, flip, cache, lambda i: report("people", i + 1, len(people)))
        if not m.analysed:
            raise ValueError(f"no person could be analysed: {m.skipped[0]['reason']}")

        subset = m.analysed[:occlusion_people]
        rand = None
        if subset:
            report("occlusion", 0, len(subset))     # the sweep is slow (minutes per person on TP-H): say it started
        studies, rhos, asked = measure_occlusion(pose_model, people, m, subset, flip, window, stride, cache,
                                                 lambda n: report("occlusion", n + 1, len(subset)))
        if subset:
            samples = [(load_image(people[i].image, cache), people[i].bbox) for i in subset]
            rand = model_randomisation(pose_model, samples, seed=seed, flip=flip,
                                       progress=lambda d, t: report("randomisation", d, t))

        q = m.queries
        stats = map_statistics(m.maps)
        claims = all_claims(q, m.num_layers, stats, studies, asked, rand, rhos, window, stride)
        meta = {"model": pose_model.name, "layers": m.num_layers, "token_grid": list(pose_model.layout.grid),
                "annotations": str(annotations), "images": str(images), "data": data_note or str(annotations),
                "people_asked": len(people), "people_analysed": len(m.analysed), "queries": len(q),
                "occlusion_people": len(subset), "skipped": m.skipped, "flip": flip, "max_people": max_people,
                "pck_alpha": PCK_ALPHA, "seconds": round(time.time() - started, 1), "command": command,
                "criteria": {c.id: c.criterion for c in claims}}
        result = Findings(claims, numbers(q, m.num_layers, rhos), meta)
        report("writing", 0, 1)
        write_report(result, out, m, stats, studies, rhos, rand)
        result.out_dir = out
        report("writing", 1, 1)
    return result


def synthetic_findings(pose_model: PoseModel, n: int, out_dir: str | Path, seed: int = 0, **kwargs) -> Findings:
    """`findings` on `n` images of synthetic people made by `tpexplain.training.synth` (generated in a temporary
    folder, removed afterwards; the same n and seed give the same images)."""
    if n < 1:
        raise ValueError(f"--synthetic needs at least 1 image, got {n}")
    check_report_dir(out_dir)
    with tempfile.TemporaryDirectory(prefix="tpexplain-synth-") as tmp:
        ann, images = make_synthetic_people(tmp, n, seed)
        return findings(pose_model, ann, images, out_dir, seed=seed,
                        data_note=f"{n} synthetic images (tpexplain.training.synth, seed {seed})", **kwargs)


class _Stages:
    """`report(stage, done, total)` for the run's stages: the caller's callback when given, else one
    `tpexplain.progress` bar per stage (closed when the stage ends or the run fails)."""

    def __init__(self, progress):
        self.callback = progress if callable(progress) else None
        self.enabled = bool(progress) and self.callback is None
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.callback is not None:
            self.callback(stage, done, total)
            return
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = progress_bar(total, f"findings {stage}", _UNITS.get(stage, "it"))
        bar.update(done - bar.done)
        if done >= total:
            bar.close()

    def __enter__(self) -> "_Stages":
        return self

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()
