"""Whose pose a single-image command explains: detected people, --person, --bbox, --coco and --at gt."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import DATA
from tpexplain.cli import main

ROOT = Path(__file__).resolve().parents[1]
SKIERS = DATA / "000000197388.jpg"          # five annotated skiers
ANN = DATA / "test_coco.json"


def cli(*args, cwd: Path):
    """Run tpexplain in-process (the default model, no flip test: fast) from `cwd`."""
    import os
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [*map(str, args), "--no-flip"])
    finally:
        os.chdir(old)


def one_line_error(r, *words):
    assert r.exit_code == 1, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("Error:") and sum(ln.startswith("Error") for ln in lines) == 1, r.stderr
    for w in words:
        assert w in lines[-1], lines[-1]


def test_several_people_found_the_largest_explained_and_said(tmp_path):
    r = cli("attention", SKIERS, "-k", "l_ankle", "-o", "a.png", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    msg = r.stderr
    assert "people found in 000000197388.jpg; explaining person 1, the largest: box" in msg
    assert "Others: 2: box" in msg and "--person N or --bbox X,Y,W,H" in msg
    assert "Scores: the detector's margin x a gain per source" in msg          # the scale of "score 1.50"
    others = msg.split("Others: ")[1].split(". Pick")[0].split("; ")
    assert all(o.split(" (")[1].split(",")[0] in ("hog", "upperbody", "face", "profile") for o in others)
    assert (tmp_path / "a.png").stat().st_size > 0

    r2 = cli("attention", SKIERS, "-k", "l_ankle", "--person", "2", "-o", "b.png", cwd=tmp_path)
    assert r2.exit_code == 0, r2.output
    assert "explaining person 2: box" in r2.stderr and "Others: 1: box" in r2.stderr
    first = msg.split("explaining person 1, the largest: box ")[1].split(" ")[0]
    second = r2.stderr.split("explaining person 2: box ")[1].split(" ")[0]
    assert first != second                          # another person, hence another crop

    r3 = cli("attention", SKIERS, "-k", "l_ankle", "--person", "9", "-o", "c.png", cwd=tmp_path)
    one_line_error(r3, "--person 9", "found in 000000197388.jpg")
    assert not (tmp_path / "c.png").exists()


def test_nobody_found_is_one_line_asking_for_a_box_and_writes_nothing(tmp_path):
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 200, np.uint8))
    for command in (["attention", blank, "-k", "nose"], ["layers", blank, "-k", "nose"],
                    ["occlusion", blank, "-k", "nose"]):
        r = cli(*command, "-o", "out.png", cwd=tmp_path)
        one_line_error(r, "no person found in blank.jpg", "--bbox X,Y,W,H")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.jpg"]


def test_readme_first_command_finds_the_synthetic_person(tmp_path):
    r = cli("attention", ROOT / "examples" / "synthetic_person.jpg", "--keypoint", "l_ankle", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "1 person found in synthetic_person.jpg: box" in r.stderr
    assert (tmp_path / "synthetic_person_l_ankle_dependency_default.png").exists()


def test_bbox_is_used_as_given_and_excludes_person(tmp_path):
    r = cli("attention", SKIERS, "-k", "nose", "--bbox", "287,62,75,166", "-o", "a.png", cwd=tmp_path)
    assert r.exit_code == 0 and "found" not in r.stderr, r.output
    r = cli("attention", SKIERS, "-k", "nose", "--bbox", "287,62,75,166", "--person", "1", "-o", "b.png",
            cwd=tmp_path)
    one_line_error(r, "--person", "not with --bbox")


def test_coco_person_by_id_and_by_index_is_the_same_annotation(tmp_path):
    by_id = cli("layers", SKIERS, "-k", "l_ankle", "--coco", ANN, "--person", "467657", "-o", "id.png", cwd=tmp_path)
    by_index = cli("layers", SKIERS, "-k", "l_ankle", "--coco", ANN, "--person", "2", "-o", "ix.png", cwd=tmp_path)
    for r in (by_id, by_index):
        assert r.exit_code == 0, r.output
        assert "annotation 467657: OKS " in r.stderr and "PCK " in r.stderr and "(16 labelled keypoints)" in r.stderr
    a = json.loads((tmp_path / "id.json").read_text())
    b = json.loads((tmp_path / "ix.json").read_text())
    assert a["metrics"] == b["metrics"]

    largest = cli("attention", SKIERS, "-k", "nose", "--coco", ANN, "-o", "l.png", cwd=tmp_path)
    assert largest.exit_code == 0, largest.output
    assert "5 annotated people in test_coco.json; explaining the largest with keypoints, annotation 533949" \
        in largest.stderr and "--person ID or INDEX" in largest.stderr

    bad = cli("attention", SKIERS, "-k", "nose", "--coco", ANN, "--person", "77", "-o", "x.png", cwd=tmp_path)
    one_line_error(bad, "--person 77", "annotation id", "1..5")
    other = DATA / "000000000785.jpg"
    tmp_image = tmp_path / "not_listed.jpg"
    tmp_image.write_bytes(other.read_bytes())
    r = cli("attention", tmp_image, "-k", "nose", "--coco", ANN, "-o", "y.png", cwd=tmp_path)
    one_line_error(r, "lists no image named not_listed.jpg")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()


def test_bbox_with_coco_takes_the_matching_annotation(tmp_path):
    r = cli("attention", SKIERS, "-k", "nose", "--coco", ANN, "--bbox", "287,62,75,166", "-o", "a.png",
            cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "--bbox matches annotation 467657" in r.stderr and "annotation 467657): OKS" in r.stderr


def test_at_gt_needs_ground_truth(tmp_path):
    r = cli("attention", SKIERS, "-k", "nose", "--at", "gt", "--bbox", "287,62,75,166", "-o", "a.png",
            cwd=tmp_path)
    one_line_error(r, "--at gt needs", "--coco ANN")
    r = cli("occlusion", SKIERS, "-k", "nose", "--at", "gt", "--sweep", "-o", "a.png", cwd=tmp_path)
    assert r.exit_code == 2 and "--sweep" in r.stderr
    assert not (tmp_path / "a.png").exists()


@pytest.fixture(scope="module")
def skier_gt():
    """The default model's explanation of skier 467657 with its ground truth, and a keypoint whose predicted and
    ground-truth tokens differ."""
    import tpexplain
    from tpexplain.detect.select import ground_truth, image_annotations
    ann = next(a for a in image_annotations(ANN, SKIERS) if a["id"] == 467657)
    pm = tpexplain.load("default")
    ex = pm.explain(str(SKIERS), bbox=ann["bbox"], flip=False)
    ex.ground_truth = ground_truth(ann)
    labelled = [k for k in ex.keypoint_names if ex.ground_truth[ex.keypoint(k), 2] > 0]
    far = max(labelled, key=lambda k: np.hypot(*(ex.keypoints[ex.keypoint(k), :2]
                                                  - ex.ground_truth[ex.keypoint(k), :2])))
    return pm, ex, ann, far


def test_at_gt_queries_the_ground_truth_token(skier_gt, tmp_path):
    pm, ex, ann, far = skier_gt
    pred, gt = ex.attention_map("dependency", far, -1, at="pred"), ex.attention_map("dependency", far, -1, at="gt")
    assert pred.token != gt.token
    assert not np.allclose(pred.values, gt.values)
    r = cli("layers", SKIERS, "-k", far, "--coco", ANN, "--person", "467657", "--at", "gt", "-o", "g.png",
            cwd=tmp_path)
    assert r.exit_code == 0, r.output
    q = json.loads((tmp_path / "g.json").read_text())["queries"][0]
    assert q["at"] == "gt" and q["token"] == gt.token


def test_occlusion_at_gt_hides_the_ground_truth_joint(skier_gt):
    from tpexplain.analysis.occlusion import occlusion_study
    pm, ex, ann, far = skier_gt
    k = ex.keypoint(far)
    gx, gy = (int(round(v)) for v in ex.ground_truth[k, :2])
    px, py = (int(round(v)) for v in ex.keypoints[k, :2])
    study = occlusion_study(pm, str(SKIERS), far, bbox=ann["bbox"], flip=False, ground_truth=ex.ground_truth, at="gt")
    assert study.mask[gy, gx] and not study.mask[py, px]
    assert study.summary()["at"] == "gt" and study.before.ground_truth is not None
    pred = occlusion_study(pm, str(SKIERS), far, bbox=ann["bbox"], flip=False)
    assert pred.mask[py, px] and "at" not in pred.summary()


def test_another_keypoint_set_is_matched_by_name_as_batch_does(tmp_path):
    """An MPII model with COCO labels: --at gt and OKS/PCK use the joints both share (batch's rule); a file
    sharing no joint is refused in one line, with batch's message."""
    from tpexplain.batch.inputs import coco_items
    from tpexplain.zoo import keypoint_names
    r = cli("attention", SKIERS, "-k", "l_ankle", "--model", "tokenpose-l-d6", "--weights", "random", "--coco", ANN,
            "--person", "437295", "--at", "gt", "-o", "m.png", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "annotation 437295: OKS" in r.stderr and "12 labelled keypoints" in r.stderr
    assert "not used" not in r.stderr and (tmp_path / "m.png").exists()

    data = json.loads(ANN.read_text())
    data["categories"][0]["keypoints"] = [f"joint{i}" for i in range(17)]
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(data))
    r = cli("attention", SKIERS, "-k", "nose", "--coco", odd, "-o", "n.png", cwd=tmp_path)
    one_line_error(r, "none of its keypoints")
    with pytest.raises(ValueError) as batch_error:
        coco_items(odd, DATA, keypoint_names=tuple(keypoint_names("default")))
    assert r.stderr.strip().splitlines()[-1] == f"Error: {batch_error.value}"


def test_bbox_matching_no_annotation_and_person_not_a_number(tmp_path):
    r = cli("attention", SKIERS, "-k", "nose", "--coco", ANN, "--bbox", "400,0,50,40", "--at", "gt", "-o", "a.png",
            cwd=tmp_path)
    one_line_error(r, "--bbox matches no annotated person (IoU ≥ 0.5)")
    for command in ("attention", "layers", "occlusion"):
        r = cli(command, SKIERS, "-k", "nose", "--person", "abc", "-o", "b.png", cwd=tmp_path)
        assert r.exit_code == 2, r.output
        assert "--person takes a number, or an annotation id with --coco" in r.stderr
        assert "found" not in r.stderr                  # refused before the detector ran


def test_symmetric_at_gt_says_so_places_regions_from_the_ground_truth_and_names_the_person(tmp_path):
    r = cli("occlusion", SKIERS, "-k", "l_wrist", "--symmetric", "--at", "gt", "--coco", ANN, "--person", "437295",
            "-o", "s.png", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert "hide l_wrist at its ground-truth position (mean) → l_wrist" in r.stdout
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["symmetric"]["regions_from"] == "ground truth"
    assert (data["image"], data["person"], data["model"], data["weights"]) == \
        ("000000197388.jpg", "annotation 437295", "default", None)
    assert len(data["box"]) == 4 and 0 <= data["oks"] <= 1 and 0 <= data["pck"] <= 1 and data["labelled"] == 16
    header, first = (tmp_path / "s.csv").read_text().splitlines()[:2]
    assert header == "region,mass_before,mass_after,shift,image,person,box,model,weights,oks,pck"
    assert first.startswith("own,") and ",000000197388.jpg,annotation 437295,\"139,102,222,242\",default,," in first


def test_own_and_mirror_regions_that_overlap_are_warned(skier_gt, caplog):
    from dataclasses import replace

    from tpexplain.analysis.occlusion import _mirror_overlap, regions_pose
    pm, ex, ann, far = skier_gt
    k, m = ex.keypoint("l_wrist"), ex.keypoint("r_wrist")
    from_gt = regions_pose(ex, "gt")
    gt = ex.ground_truth_at("crop")
    assert np.allclose(from_gt.keypoints_crop[k], gt[k, :2]) and regions_pose(ex, "pred") is ex
    collapsed = np.array(ex.keypoints_crop, np.float64)
    collapsed[m] = collapsed[k] + 1                 # a prediction collapsed onto the mirror joint
    with caplog.at_level("WARNING"):
        assert _mirror_overlap(replace(ex, keypoints_crop=collapsed), k, m, "pred")
    assert "own and mirror regions overlap" in caplog.text and "--at gt" in caplog.text
