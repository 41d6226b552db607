"""The findings report: every claim has a statistic, a criterion and a verdict; figures exist; the report is
written atomically; bad arguments give one-line errors."""
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import tpexplain
from tpexplain.analysis.findings import Findings, check_report_dir, claims, findings, measure, read_people
from tpexplain.analysis.findings import figures as report_figures
from tpexplain.analysis.stats import sign_test

from conftest import DATA

ANN = DATA / "test_coco.json"
VERDICTS = {"holds", "does not hold", "not measured"}
CLAIMS = {"activation_max_on_keypoint", "dependency_on_person", "head_joints_on_head",
          "limb_joints_use_symmetric_joint", "finer_with_depth_distance", "finer_with_depth_entropy",
          "occluded_keypoints_found", "hidden_keypoint_uses_other_cues", "dependencies_image_specific",
          "dependencies_share_commonalities", "randomisation_changes_maps", "attention_agrees_with_occlusion"}

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
        assert c["statistic"]["definition"] and "value" in c["statistic"], cid
        assert c["criterion"], cid
        assert c["verdict"] in VERDICTS, cid
        if c["verdict"] != "not measured":
            assert c["statistic"]["value"] is not None, cid
            assert c["figure"] and (out / c["figure"]).is_file(), cid
    for fig in data["meta"]["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for c in data["claims"].values():
        # the criterion is stated before the verdict in the claim's section
        section = md[md.index(c["statement"]):]
        assert section.index("**Criterion.**") < section.index("**Result.**")
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="figures/' not in html      # self-contained
    return data


def test_synthetic_findings_command(tmp_path):
    out = tmp_path / "report"
    r = invoke("findings", "--synthetic", 3, "--max-people", 4, "--occlusion-people", 1, "--model", "default",
               "--weights", "random", "--out", out)
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == str(out / "report.md")
    assert re.search(r"findings\]? people", r.output)      # the CLI's progress lines or tpexplain.progress's
    data = check_report(out)
    assert data["meta"]["people_analysed"] == 4 and "synthetic" in data["meta"]["data"]
    assert data["claims"]["randomisation_changes_maps"]["verdict"] != "not measured"
    # a run over an earlier report replaces it, and leaves no temporary folders behind
    r = invoke("findings", "--synthetic", 2, "--max-people", 2, "--occlusion-people", 0, "--model", "default",
               "--weights", "random", "--out", out)
    assert r.exit_code == 0, r.output
    data = check_report(out)
    assert data["meta"]["people_analysed"] == 2
    assert data["claims"]["randomisation_changes_maps"]["verdict"] == "not measured"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_coco_findings_use_ground_truth(model, tmp_path):
    from tpexplain.training.evaluate import evaluate
    out = tmp_path / "coco"
    f = findings(model, ANN, DATA, out, max_people=None, occlusion_people=1, window=64, stride=64)
    assert isinstance(f, Findings) and f.out_dir == out
    data = check_report(out)
    # coco_mini: 12 people with keypoints, 164 visible and 17 occluded labelled keypoints (its README)
    assert data["meta"]["people_analysed"] == 12
    assert f.claim("activation_max_on_keypoint").details["num_visible"] == 164
    assert f.claim("occluded_keypoints_found").details["num_occluded"] == 17
    assert data["meta"]["queries"] == 181
    # the accuracy claims agree with `tpexplain eval` on the same ground truth
    m = evaluate(model, ANN, DATA)
    assert f.claim("activation_max_on_keypoint").value == pytest.approx(m["PCK_visible"], abs=0.02)
    assert f.claim("occluded_keypoints_found").value == pytest.approx(m["PCK_occluded"], abs=0.07)
    for q in data["numbers"]["queries"]:
        assert sum(q["masses"].values()) == pytest.approx(1.0, abs=1e-3)


def test_interrupted_run_leaves_nothing(model, tmp_path, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(report_figures, "fig_depth", boom)
    out = tmp_path / "rep"
    caplog.set_level(logging.INFO, logger="tpexplain")
    with pytest.raises(RuntimeError, match="disk full"):
        findings(model, ANN, DATA, out, max_people=2, occlusion_people=0)
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
    assert sign_test([-1, 1, 0]) == (1, 2, 0.75)                      # zeros dropped
    assert sign_test([])[1] == 0
    # three types with a distinct bright token each, plus per-person noise: common and specific
    rng = np.random.default_rng(0)
    maps = {}
    for k in range(3):
        for p in range(6):
            m = rng.random((4, 3)) * 0.2
            m[k, k] += 1
            maps.setdefault(k, {})[p] = m / m.sum()
    stats = claims.map_statistics(maps)
    specific, common = claims.map_claims(stats)
    assert common.value == 1.0
    assert 0 < specific.value < 1


@pytest.mark.parametrize("args, words", [
    ((), ["--coco", "--synthetic"]),
    (("--coco", ANN), ["both"]),
    (("--synthetic", 2, "--coco", ANN, "--images", DATA), ["not both"]),
    (("--coco", "nope.json", "--images", DATA), ["annotation file not found"]),
    (("--coco", ANN, "--images", "nodir"), ["image folder not found"]),
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
    assert obs / exp == pytest.approx(1.0, abs=0.1)          # near, but no more attention than distance gives
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
    f = findings(model, ann, DATA, out, max_people=4, occlusion_people=0,
                 progress=lambda *a: calls.append(a))               # a callback replaces the progress bars
    assert calls == [("people", 1, 4), ("people", 2, 4), ("people", 3, 4), ("people", 4, 4),
                     ("writing", 0, 1), ("writing", 1, 1)]
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
