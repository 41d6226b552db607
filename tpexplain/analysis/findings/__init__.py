"""The findings report: the TransPose paper's claims about its attention, measured over many people and
against null baselines, with bootstrap intervals."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...api import PoseModel
from ...io import read_image
from ...keypoints import COCO_KEYPOINTS, PCK_ALPHA
from ...progress import progress as progress_bar
from ..stats import sign_test
from . import criteria
from .baselines import peaked_model, random_model
from .claims import Claim, Findings, evaluate, type_table
from .measure import MeasureOptions, measure_person, person_tasks
from .people import Person, make_synthetic_people, read_people
from .report import check_report_dir, write_report

__all__ = ["findings", "synthetic_findings", "read_people", "check_report_dir", "Findings", "Claim", "Person",
           "sign_test", "measure_person", "MeasureOptions", "person_tasks", "summarise"]

_UNITS = {"people": "people", "calibration": "steps", "random baseline": "people", "peaked baseline": "people",
          "writing": "reports"}
Tasks = list  # [(Person, MeasureOptions)]
_CALIBRATION_STEPS = 13     # peaked_model's evaluations at most: unscaled, both ends, 10 bisection steps
MapPeople = Callable[[PoseModel, Tasks], list]


def findings(pose_model: PoseModel, annotations: str | Path, images: str | Path, out_dir: str | Path,
             max_people: int | None = 200, occlusion_people: int = 20, flip: bool = True,
             window: int = 32, stride: int = 16, seed: int = 0,
             progress: bool | Callable[[str, int, int], None] | None = True, data_note: str | None = None,
             command: str | None = None, detections: str | Path | None = None,
             resamples: int = criteria.BOOTSTRAP_RESAMPLES, map_people: MapPeople | None = None) -> Findings:
    """Measure every claim over the people of a COCO person-keypoints file, on the model and on two null
    baselines, and write the report to `out_dir`.

        f = findings(load("default"), "person_keypoints.json", "images/", "report/")
        f.verdicts()          # {"activation_max_on_keypoint": "holds", ...}

    Each person is cropped with its ground-truth box (or, with `detections`, the matching detection). Claims
    about a keypoint's attention query the GROUND-TRUTH joint and are also reported for correctly and wrongly
    predicted keypoints; hidden-joint studies hide the ground-truth joint. The baselines are the same
    architecture with re-initialised weights (seed `seed + 1`) and that model with its attention logits
    scaled until its mean attention entropy matches the model's ("peaked"). Every statistic gets a
    bootstrap interval over people (`resamples`, seeded); see `claims.py` for the verdict rules and
    `criteria.py` for every constant with its reason.

    `max_people` bounds the set (file order); the costly occlusion parts run on the first `occlusion_people`
    (0 skips them: those claims are "not measured"). `map_people(pose_model, tasks)` measures a list of
    (person, options) tasks with `measure_person` and returns the records in order (default: one by one
    here; e.g. a Dask cluster); the report is the same however they were produced. `progress`: True shows
    `tpexplain.progress` bars, False or None nothing; a callable `progress(stage, done, total)` instead.

    Output (written into a temporary folder beside `out_dir`, then moved into place): report.md,
    report.html (figures embedded), figures/*.png, findings.json.
    """
    if tuple(pose_model.keypoint_names) != COCO_KEYPOINTS:
        raise ValueError(f"the findings need a model that predicts the 17 COCO keypoints; {pose_model.name} "
                         f"predicts {len(pose_model.keypoint_names)} others")
    if max_people is not None and max_people < 1:
        raise ValueError(f"max_people must be at least 1, got {max_people}")
    if occlusion_people < 0:
        raise ValueError(f"occlusion_people must be 0 or more, got {occlusion_people}")
    out = check_report_dir(out_dir)
    skipped: list[dict] = []
    people = read_people(annotations, images, max_people, pose_model.keypoint_names, detections, skipped)
    started = time.time()
    tasks = person_tasks(people, flip, occlusion_people, window, stride)
    with _Stages(progress) as report:
        def sequential(stage: str) -> MapPeople:
            def run(pm: PoseModel, todo: Tasks) -> list:
                out = []
                for i, (person, options) in enumerate(todo):
                    out.append(measure_person(pm, person, options))
                    report(stage, i + 1, len(todo))
                return out
            return run

        measurements = {"model": (map_people or sequential("people"))(pose_model, tasks)}
        analysed = [r for r in measurements["model"] if "skipped" not in r]
        if not analysed:
            raise ValueError(f"no person could be analysed: {measurements['model'][0]['skipped']}")
        random = random_model(pose_model, seed + criteria.BASELINE_SEED_OFFSET)
        calibration = [(read_image(people[r["index"]].image), people[r["index"]])
                       for r in analysed[:criteria.CALIBRATION_PEOPLE]]
        target = calibration_entropy(pose_model, calibration)
        steps = [0]

        def entropy_of(pm: PoseModel) -> float:
            steps[0] += 1
            report("calibration", min(steps[0], _CALIBRATION_STEPS), _CALIBRATION_STEPS)
            return calibration_entropy(pm, calibration)

        peaked, match = peaked_model(random, target, entropy_of)
        report("calibration", _CALIBRATION_STEPS, _CALIBRATION_STEPS)
        measurements["random"] = (map_people or sequential("random baseline"))(random, tasks)
        measurements["peaked"] = (map_people or sequential("peaked baseline"))(peaked, tasks)
        baselines = {"random": {"model": random.name, "seed": seed + criteria.BASELINE_SEED_OFFSET},
                     "peaked": {"model": peaked.name, **match}}
        baselines["peaked"]["mean_entropy_all_people"] = mean_entropy(measurements["peaked"])
        baselines["peaked"]["model_mean_entropy_all_people"] = mean_entropy(measurements["model"])
        for name in ("random", "peaked"):
            baselines[name]["mean_entropy_by_layer"] = entropy_by_layer(measurements[name])
        baselines["model_mean_entropy_by_layer"] = entropy_by_layer(measurements["model"])
        result = summarise(measurements, resamples, seed)
        q = result.numbers["queries"]
        result.meta.update({
            "model": pose_model.name, "token_grid": list(pose_model.layout.grid), "annotations": str(annotations),
            "images": str(images), "detections": None if detections is None else str(detections),
            "data": data_note or str(annotations), "people_asked": len(people) + len(skipped),
            "skipped": skipped + result.meta["skipped"], "flip": flip, "max_people": max_people,
            "occlusion_window": window, "occlusion_stride": stride, "pck_alpha": PCK_ALPHA,
            "seconds": round(time.time() - started, 1), "command": command, "baselines": baselines,
            "queries_correct": int(sum(r["hit"] for r in q)), "queries_wrong": int(sum(not r["hit"] for r in q))})
        report("writing", 0, 1)
        example = _example(pose_model, people, analysed[0], flip)
        write_report(result, out, measurements["model"], example)
        result.out_dir = out
        report("writing", 1, 1)
    return result


def summarise(measurements: dict[str, list[dict]], resamples: int = criteria.BOOTSTRAP_RESAMPLES,
              seed: int = 0) -> Findings:
    """The claims from per-person records: `measurements["model"]` for the model and one list per baseline
    ("random", "peaked"), each in the people's order. A pure function of its arguments."""
    claims, t = evaluate(measurements, resamples, seed)
    recs = measurements["model"]
    analysed = [r for r in recs if "skipped" not in r]
    layers = analysed[0]["num_layers"] if analysed else 0
    q = [{**row, "person": i} for i, r in enumerate(recs) for row in r.get("queries", [])]
    per_layer = {key: [float(np.mean([row[key][i] for row in q])) if q else float("nan") for i in range(layers)]
                 for key in ("entropy", "distance_body", "distance_px")}
    numbers = {"queries": [_compact(r) for r in q], "by_type": type_table(t), "per_layer": per_layer,
               "agreement": [{**a, "person": i} for i, r in enumerate(recs) for a in r.get("agreement", [])],
               "hidden": [{**h, "person": i} for i, r in enumerate(recs) for h in r.get("hidden", [])]}
    skipped = [{"image": r["person"]["image"], "annotation_id": r["person"]["annotation_id"], "reason": why}
               for r in recs for why in ([r["skipped"]] if "skipped" in r else
                                         [f"occlusion: {r['occlusion_skipped']}"] if "occlusion_skipped" in r else [])]
    meta = {"layers": layers, "people_analysed": len(analysed), "queries": len(q),
            "occlusion_people": sum(1 for r in analysed if "hidden" in r), "skipped": skipped,
            "bootstrap": {"resamples": resamples, "seed": seed, "confidence": criteria.CONFIDENCE},
            "criteria": {name: {"value": v, "reason": why} for name, (v, why) in criteria.REASONS.items()},
            "claim_criteria": {c.id: c.criterion for c in claims}}
    return Findings(claims, numbers, meta)


def mean_entropy(records: list[dict]) -> float:
    """Mean over the records' queries and layers of the attention entropy at the ground-truth joints."""
    vals = [float(np.mean(r["entropy"])) for rec in records for r in rec.get("queries", [])]
    return float(np.mean(vals)) if vals else float("nan")


def entropy_by_layer(records: list[dict]) -> list[float]:
    vals = [r["entropy"] for rec in records for r in rec.get("queries", [])]
    return [float(v) for v in np.mean(vals, axis=0)] if vals else []


def calibration_entropy(pose_model: PoseModel, people: list[tuple[np.ndarray, Person]]) -> float:
    """Mean over `people` [(image, person)], their labelled joints and the layers of the entropy of the
    dependency map (mean of heads, visual tokens) at the ground-truth joint: the peaked baseline's target and
    search. Without the flip test (the maps kept are the un-flipped image's either way and the queries are
    the ground-truth joints, so the flip changes nothing measured here); all joints of a layer at once."""
    vals = []
    for image, p in people:
        ex = pose_model.explain(image, bbox=p.bbox, flip=False)
        ex.ground_truth = p.keypoints
        tokens = [ex.query(int(k), at="gt")[0] for k in np.flatnonzero(p.keypoints[:, 2] > 0)]
        ns = len(ex.layout.special)
        per_layer = []
        for att in ex.attention:
            rows = att.rows(tokens)[0].mean(0)[:, ns:].double().clamp_min(0)     # (joints, visual tokens)
            rows = rows / rows.sum(-1, keepdim=True)
            per_layer.append(-(rows * torch.log(torch.where(rows > 0, rows, torch.ones_like(rows)))).sum(-1))
        vals.extend(torch.stack(per_layer).mean(0).tolist())
    return float(np.mean(vals))


def _example(pose_model: PoseModel, people: list[Person], record: dict, flip: bool):
    person = people[record["index"]]
    ex = pose_model.explain(read_image(person.image), bbox=person.bbox, flip=flip)
    ex.ground_truth = person.keypoints
    ex.meta.update(image=person.image.name, person=f"annotation {person.annotation_id}", model=pose_model.name)
    return ex


def _compact(r: dict) -> dict:
    """A query row with its floats rounded to 5 digits, for findings.json."""
    def rnd(v):
        return round(v, 5) if isinstance(v, float) else v
    return {k: ([rnd(x) for x in v] if isinstance(v, list) else {a: rnd(b) for a, b in v.items()}
                if isinstance(v, dict) else rnd(v)) for k, v in r.items()}


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
