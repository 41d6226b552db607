"""The findings report: every claim has a statistic, an interval, a criterion, baselines and a verdict; a random
model never "holds" a claim unqualified; near-threshold statistics are inconclusive; the criteria, sample sizes
and baselines are printed; per-person records are order- and process-independent; bad arguments give one line."""
import json
import logging
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import tpexplain
from tpexplain.analysis.findings import (Findings, check_report_dir, claims, criteria, findings, measure,
                                         measure_person, person_tasks, read_people, summarise)
from tpexplain.analysis.findings import figures as report_figures
from tpexplain.analysis.findings.baselines import random_model, scale_attention
from tpexplain.analysis.findings.people import detection_boxes
from tpexplain.analysis.stats import sign_test

from conftest import DATA

ANN = DATA / "test_coco.json"
VERDICTS = set(claims.VERDICTS)
CLAIMS = {"activation_max_on_keypoint", "dependency_on_person", "head_joints_on_head",
          "limb_joints_use_symmetric_joint", "finer_with_depth_distance", "finer_with_depth_entropy",
          "occluded_keypoints_found", "hidden_keypoint_uses_other_cues", "dependencies_image_specific",
          "dependencies_share_commonalities", "attention_agrees_with_occlusion"}

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return tpexplain.load("default", weights="random")


def invoke(*args):
    from tpexplain.cli import main
    return CliRunner().invoke(main, [str(a) for a in args])


def check_report(out: Path) -> dict:
    data = json.loads((out / "findings.json").read_text())
    assert set(data["claims"]) == CLAIMS
    for cid, c in data["claims"].items():
        stat = c["statistic"]
        assert stat["definition"] and "value" in stat and "interval" in stat, cid
        assert c["criterion"] and c["verdict"] in VERDICTS, cid
        if stat["value"] is not None:
            lo, hi = stat["interval"]
            assert lo is not None and lo <= stat["value"] <= hi, cid           # the interval holds the estimate
        assert set(c["baselines"]) == {"random", "peaked"}, cid
        if c["verdict"] not in ("not measured",):
            assert c["figure"] and (out / c["figure"]).is_file(), cid
    for fig in data["meta"]["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for c in data["claims"].values():
        section = md[md.index(c["statement"]):]
        assert section.index("**Criterion.**") < section.index("**Result.**")
    # the criteria with their reasons, the sample sizes and the baselines are printed
    assert "## Criteria and sample sizes" in md and "| SRI_MIN | 1.1 |" in md and "MIN_PEOPLE" in md
    assert "cases / people" in md and "**Null baselines.**" in md and "re-initialised weights" in md
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="figures/' not in html      # self-contained
    return data


def test_synthetic_findings_command(tmp_path):
    out = tmp_path / "report"
    r = invoke("findings", "--synthetic", 3, "--max-people", 4, "--occlusion-people", 1, "--model", "default",
               "--weights", "random", "--bootstrap", 200, "--out", out)
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == str(out / "report.md")
    assert re.search(r"findings\]? people", r.output)
    data = check_report(out)
    assert data["meta"]["people_analysed"] == 4 and "synthetic" in data["meta"]["data"]
    assert data["meta"]["bootstrap"]["resamples"] == 200
    # 4 people are below the minimum sample size: nothing is decided
    assert {c["verdict"] for c in data["claims"].values()} <= {"inconclusive (n too small)", "not measured"}
    r = invoke("findings", "--synthetic", 2, "--max-people", 2, "--occlusion-people", 0, "--model", "default",
               "--weights", "random", "--bootstrap", 100, "--out", out)
    assert r.exit_code == 0, r.output
    data = check_report(out)
    assert data["meta"]["people_analysed"] == 2
    assert data["claims"]["attention_agrees_with_occlusion"]["verdict"] == "not measured"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_random_model_holds_nothing_and_measures_at_ground_truth(model, tmp_path):
    from tpexplain.training.evaluate import evaluate
    out = tmp_path / "coco"
    f = findings(model, ANN, DATA, out, max_people=None, occlusion_people=0, resamples=300)
    assert isinstance(f, Findings) and f.out_dir == out
    data = check_report(out)
    # no claim holds on a model that learnt nothing, unless marked as not specific to training
    assert "holds" not in f.verdicts().values(), f.verdicts()
    assert f.claim("hidden_keypoint_uses_other_cues").verdict == "not measured"
    # coco_mini: 12 people with keypoints, 164 visible and 17 occluded labelled keypoints (its README)
    assert data["meta"]["people_analysed"] == 12 and data["meta"]["queries"] == 181
    assert data["meta"]["queries_correct"] + data["meta"]["queries_wrong"] == 181
    assert f.claim("activation_max_on_keypoint").cases == 164 and f.claim("occluded_keypoints_found").cases == 17
    assert f.claim("occluded_keypoints_found").verdict == "inconclusive (n too small)"     # 17 cases, 5 people
    m = evaluate(model, ANN, DATA)
    assert f.claim("activation_max_on_keypoint").value == pytest.approx(m["PCK_visible"], abs=0.02)
    # split by correct and wrong predictions, cases adding up
    d = f.claim("dependency_on_person").details
    assert d["correct_predictions"]["cases"] + d["wrong_predictions"]["cases"] == f.claim("dependency_on_person").cases
    # the peaked baseline's attention is as peaked as the model's (on the calibration people)
    peaked = data["meta"]["baselines"]["peaked"]
    assert peaked["achieved_entropy"] == pytest.approx(peaked["target_entropy"], abs=0.01)
    for q in data["numbers"]["queries"]:
        assert sum(q["masses"].values()) == pytest.approx(1.0, abs=1e-3)


def test_queries_sit_on_the_ground_truth_joint(model):
    person = read_people(ANN, DATA, 1)[0]
    rec = measure_person(model, person, measure.MeasureOptions(flip=False))
    ex = model.explain(str(person.image), bbox=person.bbox, flip=False)
    ex.ground_truth = person.keypoints
    k = int(np.flatnonzero(person.keypoints[:, 2] > 0)[0])
    expected = ex.dependency(k, at="gt")
    assert rec["query_crop"][str(k)] == pytest.approx(list(expected.query_crop))
    got = np.asarray(rec["maps"][str(k)]).reshape(expected.values.shape)
    assert got == pytest.approx(expected.values / expected.values.sum(), abs=1e-6)


def test_records_are_picklable_and_the_report_does_not_depend_on_their_production(model):
    people = read_people(ANN, DATA, 3)
    tasks = person_tasks(people, flip=False, occlusion_people=1, window=96, stride=96)
    clone = pickle.loads(pickle.dumps((model, tasks)))            # what a cluster worker receives
    forward = [measure_person(model, p, o) for p, o in tasks]
    backward = [measure_person(clone[0], p, o) for p, o in reversed(clone[1])][::-1]
    assert json.loads(json.dumps(forward)) == forward               # JSON-able as it is
    assert backward == forward
    a = summarise({"model": forward, "random": forward, "peaked": forward}, resamples=200)
    b = summarise(pickle.loads(pickle.dumps({"model": backward, "random": backward, "peaked": backward})),
                  resamples=200)
    assert a.to_dict() == b.to_dict()
    assert "hidden" in forward[0] and "hidden" not in forward[1]


def _records(head_shares: list[float]) -> list[dict]:
    """One nose query per person with the given head shares (the other fields neutral)."""
    row = {"k": 0, "v": 2, "hit": True, "concentration": 0.5, "symmetric_observed": 0.0, "symmetric_expected": 0.0,
           "adjacent_observed": 0.0, "adjacent_expected": 0.0, "entropy": [5.0, 5.0], "distance_body": [0.3, 0.3]}
    return [{"index": i, "queries": [{**row, "head_share": h}], "maps": {}} for i, h in enumerate(head_shares)]


def test_verdicts_follow_the_interval_and_the_baselines():
    spec = next(s for s in claims.SPECS if s.id == "head_joints_on_head")
    rng = np.random.default_rng(0)
    w = claims.bootstrap_weights(20, 1000, 0)
    near = claims.tables(_records(list(0.5 + 0.1 * rng.standard_normal(20))))
    far = claims.tables(_records(list(0.8 + 0.05 * rng.standard_normal(20))))
    low = claims.tables(_records(list(0.1 + 0.05 * rng.standard_normal(20))))
    e_near, e_far, e_low = (claims.estimate(spec, t, w) for t in (near, far, low))
    for e in (e_near, e_far, e_low):
        assert e.low <= e.value <= e.high and e.cases == 20 and e.people == 20
    assert claims.verdict(spec, e_near, {"random": e_low})[0] == "inconclusive"        # straddles 0.5
    assert claims.verdict(spec, e_far, {"random": e_low})[0] == "holds"
    assert claims.verdict(spec, e_low, {"random": e_low})[0] == "does not hold"
    assert claims.verdict(spec, e_far, {"random": e_far})[0] == "not specific to training"
    close = claims.Estimate(0.45, 0.3, 0.95, 20, 20)                                     # fails, but overlaps
    assert claims.verdict(spec, e_far, {"random": close})[0] == "inconclusive"
    few = claims.estimate(spec, claims.tables(_records([0.9] * 6)), claims.bootstrap_weights(6, 100, 0))
    assert claims.verdict(spec, few, {"random": e_low})[0] == "inconclusive (n too small)"


def test_peaked_attention_scale_lowers_entropy(model):
    person = read_people(ANN, DATA, 1)[0]
    from tpexplain.analysis.findings import calibration_entropy
    from tpexplain.io import read_image
    sample = [(read_image(person.image), person)]
    base = random_model(model, 5)
    h1, h8 = calibration_entropy(base, sample), calibration_entropy(scale_attention(base, 8.0), sample)
    assert h8 < h1 - 0.05
    assert calibration_entropy(random_model(model, 5), sample) == h1                    # seeded
    assert calibration_entropy(random_model(model, 6), sample) != h1


def test_interrupted_run_leaves_nothing(model, tmp_path, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(report_figures, "fig_depth", boom)
    out = tmp_path / "rep"
    caplog.set_level(logging.INFO, logger="tpexplain")
    with pytest.raises(RuntimeError, match="disk full"):
        findings(model, ANN, DATA, out, max_people=2, occlusion_people=0, resamples=100)
    assert list(tmp_path.iterdir()) == []
    assert "findings people: 2/2 people" in caplog.text        # tpexplain.progress, as a log line off a terminal


def test_report_folder_rules(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not a findings report"):
        check_report_dir(tmp_path / "stuff")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_report_dir(tmp_path / "afile")
    with pytest.raises(ValueError, match="parent does not exist"):
        check_report_dir(tmp_path / "no" / "such" / "report")
    (tmp_path / "empty").mkdir()
    assert check_report_dir(tmp_path / "empty") == tmp_path / "empty"


def test_sign_test_and_map_statistics():
    assert sign_test([-1, -2, -3, -4, -5]) == (5, 5, 1 / 32)
    assert sign_test([-1, 1, 0]) == (1, 2, 0.75)
    # three types with a distinct bright token each, plus per-person noise: common and specific
    rng = np.random.default_rng(0)
    maps = {}
    for k in range(3):
        for p in range(6):
            m = rng.random((4, 3)) * 0.2
            m[k, k] += 1
            maps.setdefault(k, {})[p] = m / m.sum()
    stats = claims.map_statistics(maps)
    own = [x for k in stats["r_own"] for x in stats["r_own"][k]]
    other = [x for k in stats["r_other"] for x in stats["r_other"][k]]
    assert all(a > b for a, b in zip(own, other))
    assert 0 < np.mean(own) < 1


@pytest.mark.parametrize("args, words", [
    ((), ["--coco", "--synthetic"]),
    (("--coco", ANN), ["both"]),
    (("--synthetic", 2, "--coco", ANN, "--images", DATA), ["not both"]),
    (("--synthetic", 2, "--detections", ANN), ["not both"]),
    (("--coco", "nope.json", "--images", DATA), ["annotation file not found"]),
    (("--coco", ANN, "--images", "nodir"), ["image folder not found"]),
    (("--coco", ANN, "--images", DATA, "--detections", "nope.json"), ["detections file", "not found"]),
    (("--coco", ANN, "--images", DATA, "--detections", ANN), ["not COCO detection results"]),
    (("--synthetic", 0), ["--synthetic"]),
    (("--synthetic", 2, "--max-people", 0), ["--max-people"]),
    (("--synthetic", 2, "--model", "tp-r-a5"), ["unknown model"]),
    (("--synthetic", 2, "--weights", "missing.pth"), ["missing.pth", "not found"]),
])
def test_bad_arguments_give_one_line_errors(tmp_path, args, words):
    out = tmp_path / "rep"
    r = invoke("findings", *args, "--out", out)
    assert r.exit_code != 0
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    for w in words:
        assert w in lines[0], lines[0]
    assert not out.exists()


def test_refuses_a_folder_that_is_not_a_report(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    r = subprocess.run([sys.executable, "-m", "tpexplain", "findings", "--synthetic", "2", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "not a findings report" in r.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_distance_matched_reliance_ignores_plain_distance_decay():
    from tpexplain.layout import TokenLayout
    from tpexplain.analysis.depth import token_centers
    centres = token_centers(TokenLayout(grid=(16, 12), stride=(8.0, 8.0)))
    query = (40.0, 60.0)
    d = np.hypot(centres[..., 0] - query[0], centres[..., 1] - query[1])
    decay = np.exp(-d / 20)
    own = d <= 8
    mirror = np.hypot(centres[..., 0] - 56.0, centres[..., 1] - 60.0) <= 8      # close to the query
    obs, exp = measure.distance_matched(decay / decay.sum(), query, centres, mirror, own | mirror, 8.0)
    assert obs / exp == pytest.approx(1.0, abs=0.1)
    bump = decay.copy()
    bump[mirror] *= 3
    obs, exp = measure.distance_matched(bump / bump.sum(), query, centres, mirror, own | mirror, 8.0)
    assert obs / exp > 2


def test_a_bad_image_is_skipped_not_fatal(model, tmp_path):
    data = json.loads(ANN.read_text())
    data["images"][0]["file_name"] = "missing.jpg"
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    out = tmp_path / "rep"
    calls = []
    f = findings(model, ann, DATA, out, max_people=4, occlusion_people=0, resamples=100,
                 progress=lambda *a: calls.append(a))               # a callback replaces the progress bars
    assert [c for c in calls if c[0] == "people"] == [("people", i, 4) for i in range(1, 5)]
    assert {c[0] for c in calls} == {"people", "calibration", "random baseline", "peaked baseline", "writing"}
    assert f.meta["skipped"] and "not found" in f.meta["skipped"][0]["reason"]
    assert f.meta["people_analysed"] == 4 - len(f.meta["skipped"])
    assert "## Skipped" in (out / "report.md").read_text()


def test_read_people_uses_the_coco_file_order(tmp_path):
    people = read_people(ANN, DATA)
    data = json.loads(ANN.read_text())
    expected = [a for a in data["annotations"] if not a.get("iscrowd") and any(a["keypoints"][2::3])]
    assert [p.annotation_id for p in people] == [a["id"] for a in expected]
    assert len(people) == 12 and people[0].keypoints.shape == (17, 3)
    assert [p.annotation_id for p in read_people(ANN, DATA, 3)] == [a["id"] for a in expected[:3]]
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a COCO annotation file"):
        read_people(bad, DATA)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO annotation file: .*not a JSON file"):
        read_people(bad, DATA)


CROWDPOSE = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
             "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck")


def _crowdpose_file(tmp_path: Path, names=CROWDPOSE) -> Path:
    """coco_mini rewritten with CrowdPose's 14 keypoints (its 12 body joints from COCO, head and neck unlabelled),
    the category naming them `names`."""
    data = json.loads(ANN.read_text())
    long = data["categories"][0]["keypoints"]
    for a in data["annotations"]:
        kp = np.asarray(a["keypoints"]).reshape(-1, 3)
        a["keypoints"] = [float(v) for n in CROWDPOSE for v in (kp[long.index(n)] if n in long else (0, 0, 0))]
        a["num_keypoints"] = int(sum(1 for n in CROWDPOSE if n in long and kp[long.index(n), 2] > 0))
    data["categories"][0]["keypoints"] = list(names)
    path = tmp_path / "crowdpose.json"
    path.write_text(json.dumps(data))
    return path


def test_crowdpose_keypoints_are_matched_by_name(model, tmp_path):
    coco = {p.annotation_id: p for p in read_people(ANN, DATA)}
    crowd = read_people(_crowdpose_file(tmp_path), DATA)
    assert crowd and all(p.keypoints.shape == (17, 3) for p in crowd)
    for p in crowd:
        assert not p.keypoints[:5, 2].any()                                  # no head joints in CrowdPose
        assert p.keypoints[5:] == pytest.approx(coco[p.annotation_id].keypoints[5:])
    rec = measure_person(model, crowd[0], measure.MeasureOptions(flip=False))
    assert {q["k"] for q in rec["queries"]} <= set(range(5, 17)) and rec["queries"]
    # a file sharing no keypoint with the model, or a nameless one of another size: one line, early
    with pytest.raises(ValueError, match="none of its keypoints"):
        read_people(_crowdpose_file(tmp_path, tuple(f"joint{i}" for i in range(14))), DATA)
    r = invoke("findings", "--coco", _crowdpose_file(tmp_path, tuple(f"joint{i}" for i in range(14))),
               "--images", DATA, "--out", tmp_path / "rep")
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "none of its keypoints" in r.output


def test_detections_give_the_boxes(tmp_path):
    people = read_people(ANN, DATA)
    dets = []
    for p in people[1:]:                        # the first person has no detection
        x, y, w, h = p.bbox
        dets.append({"image_id": p.image_id, "category_id": 1, "bbox": [x + 2, y - 1, w * 0.95, h], "score": 0.9})
        dets.append({"image_id": p.image_id, "category_id": 1, "bbox": [x, y, w, h], "score": 0.2})   # too weak
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    assert sum(len(v) for v in detection_boxes(path).values()) == len(people) - 1
    skipped = []
    got = read_people(ANN, DATA, detections=path, skipped=skipped)
    assert [p.annotation_id for p in got] == [p.annotation_id for p in people[1:]]
    assert all(p.box_source.startswith("detection") for p in got)
    assert got[0].bbox == pytest.approx((people[1].bbox[0] + 2, people[1].bbox[1] - 1, people[1].bbox[2] * 0.95,
                                         people[1].bbox[3]))
    assert got[0].keypoints == pytest.approx(people[1].keypoints)            # ground truth of the matched person
    assert len(skipped) == 1 and skipped[0]["annotation_id"] == people[0].annotation_id
    assert "IoU" in skipped[0]["reason"]
