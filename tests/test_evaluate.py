"""`tpexplain eval` as the official TransPose/HRNet validation: box cleaning, detector boxes with OKS-NMS,
other keypoint sets, missing images; run for real on tests/data/coco_mini with the default model."""
import copy
import json
import logging
import subprocess
import sys

import numpy as np
import pytest

import tpexplain
from tpexplain.keypoints import COCO_LONG_NAMES
from tpexplain.training.evaluate import evaluate, score_keypoints
from tpexplain.training.oks import (CROWDPOSE_KEYPOINTS, CROWDPOSE_SIGMAS, clean_bbox, mirror_index,
                                    oks_overlaps, oks_nms, person_score)

from conftest import DATA

ANN = DATA / "test_coco.json"


@pytest.fixture(scope="module")
def model():
    return tpexplain.load("default")


@pytest.fixture(scope="module")
def gt_metrics(model):
    return evaluate(model, ANN, DATA, flip=False, progress=False)


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_clean_bbox_as_the_official_loader():
    # TransPose/TokenPose (DarkPose-derived loader): the far corner is x + w - 1, the size x2 - x1 + 1
    assert clean_bbox([10, 20, 100, 50], 640, 480) == [10, 20, 100, 50]       # inside the image: unchanged
    assert clean_bbox([600, 450, 100, 50], 640, 480) == [600, 450, 40, 30]    # cut at the last pixel
    assert clean_bbox([-30, -10, 100, 50], 640, 480) == [0, 0, 100, 50]       # corner to 0, size kept
    assert clean_bbox([700, 20, 50, 50], 640, 480) is None                     # wholly right of / below
    assert clean_bbox([20, 500, 50, 50], 640, 480) is None
    assert clean_bbox([5, 5, 1, 1], 640, 480) == [5, 5, 1, 1]
    # ViTPose (mmpose 0.x): the size x2 - x1, one pixel narrower and shorter; a 1-pixel box is dropped
    assert clean_bbox([10, 20, 100, 50], 640, 480, udp=True) == [10, 20, 99, 49]
    assert clean_bbox([600, 450, 100, 50], 640, 480, udp=True) == [600, 450, 39, 29]
    assert clean_bbox([-30, -10, 100, 50], 640, 480, udp=True) == [0, 0, 99, 49]
    assert clean_bbox([700, 20, 50, 50], 640, 480, udp=True) is None
    assert clean_bbox([5, 5, 1, 1], 640, 480, udp=True) is None


def test_person_score_as_the_official_rescoring():
    scores = np.array([0.1, 0.2, 0.3, 0.5])
    assert person_score(scores, 0.8) == pytest.approx(0.8 * 0.4)      # only 0.3 and 0.5 are above 0.2
    assert person_score(np.array([0.1, 0.2]), 1.0) == 0.0


def test_oks_nms_on_hand_made_poses():
    sigmas = (0.5, 0.5)                   # (2σ)² = 1: the OKS is the mean of exp(-d² / (2 · mean area))
    a = np.array([[0.0, 0.0], [10.0, 0.0]])
    b = a + [1.0, 0.0]                    # every keypoint 1 px off: exp(-1 / (2 · 1)) with areas 1 and 1
    poses = np.stack([b, a, a])           # a twice: the copy overlaps it fully
    scores = np.array([0.7, 0.9, 0.8])
    areas = np.array([1.0, 1.0, 1.0])
    assert oks_overlaps(a, poses, 1.0, areas, sigmas) == pytest.approx([np.exp(-0.5), 1.0, 1.0])
    # a (0.9) is kept, its copy (OKS 1 > 0.9) dropped, b (OKS 0.61 <= 0.9) kept
    assert oks_nms(poses, scores, areas, 0.9, sigmas) == [1, 0]
    assert oks_nms(poses, scores, areas, 0.5, sigmas) == [1]           # 0.61 > 0.5: b dropped too
    # larger people make the same offsets overlap more: areas 4 → exp(-1 / (2 · 4)) = 0.8825
    assert oks_overlaps(a, b[None], 4.0, np.array([4.0]), sigmas)[0] == pytest.approx(np.exp(-0.125))
    # equal scores: the later index first, as the official argsort()[::-1]
    assert oks_nms(poses, np.array([0.5, 0.5, 0.5]), areas, 0.9, sigmas) == [2, 0]
    assert oks_nms(np.zeros((0, 2, 2)), np.zeros(0), np.zeros(0)) == []


def test_an_unlabelled_mirror_joint_is_no_swap_target():
    gt = np.zeros((17, 3), np.float32)
    gt[:, 0], gt[:, 1], gt[:, 2] = np.linspace(50, 210, 17), np.linspace(50, 370, 17), 2
    gt[10] = 0                                            # right wrist unlabelled, stored 0,0,0
    pred = gt.copy()
    pred[9, :2] = [2, 2]                                  # left wrist predicted near (0, 0)
    _, swapped = score_keypoints(pred, gt, 100 * 100, 100)
    assert not swapped.any()
    gt[10] = [3, 3, 2]                                    # labelled there: now it is a swap
    assert score_keypoints(pred, gt, 100 * 100, 100)[1].tolist() == [j == 9 for j in range(17)]


def test_detections_of_the_labelled_boxes_give_the_same_ap_and_oks_nms_drops_a_duplicate(model, gt_metrics,
                                                                                           tmp_path):
    coco = json.loads(ANN.read_text())
    size = {i["id"]: (i["width"], i["height"]) for i in coco["images"]}
    # the boxes the ground-truth path predicts (cleaned: the detection path, as the official one, does not
    # clean detector boxes), as a detector's results with score 1
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": clean_bbox(a["bbox"], *size[a["image_id"]]),
             "score": 1.0} for a in coco["annotations"] if max(a["keypoints"]) > 0]
    skier = dets[0]
    dup = dict(skier, bbox=[skier["bbox"][0] + 2, skier["bbox"][1] + 1, *skier["bbox"][2:]], score=0.5)
    others = [{"image_id": 785, "category_id": 3, "bbox": [0, 0, 50, 50], "score": 0.99}]   # a car: ignored
    m = evaluate(model, ANN, DATA, flip=False, progress=False,
                 detections=_write(tmp_path / "d.json", dets + [dup] + others))
    assert gt_metrics["num_people"] == 12
    assert m["num_people"] == 12                          # the shifted duplicate was suppressed
    assert m["AP"] == pytest.approx(gt_metrics["AP"], abs=1e-6)
    assert m["AR"] == pytest.approx(gt_metrics["AR"], abs=1e-6)
    assert "PCK_visible" not in m and m["skipped"] == []
    # the duplicate's pose really overlaps the original's above the official 0.9
    p = model.predict(DATA / "000000000785.jpg", [skier["bbox"], dup["bbox"]], flip=False)
    areas = np.array([np.prod(c.scale * 200) for c in p.crops])
    assert oks_overlaps(p.keypoints[0], p.keypoints[1:], areas[0], areas[1:])[0] > 0.9


def _crowdpose(coco: dict) -> dict:
    """coco_mini as a CrowdPose file: COCO's 12 limb joints, the nose as head, the shoulders' midpoint as
    neck; no area field (CrowdPose has none)."""
    out = copy.deepcopy(coco)
    out["categories"] = [{"id": 1, "name": "person", "supercategory": "person",
                          "keypoints": list(CROWDPOSE_KEYPOINTS)}]
    for a in out["annotations"]:
        kp = np.array(a["keypoints"], float).reshape(17, 3)
        neck = (kp[5] + kp[6]) / 2 if kp[5, 2] > 0 and kp[6, 2] > 0 else np.zeros(3)
        neck[2] = min(kp[5, 2], kp[6, 2])
        new = np.concatenate([kp[5:17], kp[0:1], neck[None]])
        a["keypoints"] = new.reshape(-1).tolist()
        a["num_keypoints"] = int((new[:, 2] > 0).sum())
        del a["area"]
    return out


class CrowdPoseModel:
    """The default model's COCO keypoints mapped to CrowdPose's 14 as `_crowdpose` maps the labels."""

    name = "default-as-crowdpose"
    keypoint_names = tuple(n.replace("left_", "l_").replace("right_", "r_") for n in CROWDPOSE_KEYPOINTS)

    def __init__(self, model):
        self.model = model

    def predict(self, image, boxes, flip=True):
        poses = self.model.predict(image, boxes, flip=flip)
        kp = poses.keypoints
        poses.keypoints = np.concatenate([kp[:, 5:17], kp[:, 0:1], (kp[:, 5:6] + kp[:, 6:7]) / 2], axis=1)
        return poses


def test_a_14_keypoint_file_is_refused_for_a_17_keypoint_model_and_evaluated_for_a_14_keypoint_one(model,
                                                                                                   tmp_path):
    ann = _write(tmp_path / "crowdpose.json", _crowdpose(json.loads(ANN.read_text())))
    with pytest.raises(ValueError, match="declares 14 keypoints \\(CrowdPose\\) but default predicts 17"):
        evaluate(model, ann, DATA, flip=False, progress=False)
    m = evaluate(CrowdPoseModel(model), ann, DATA, flip=False, progress=False)
    assert 0.0 <= m["AP"] <= 1.0 and m["num_people"] == 12
    table = m["per_keypoint"]
    assert list(table)[:14] == ["l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
                                "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle", "head", "neck"]
    assert table["head"]["swap_rate"] == 0.0 and table["neck"]["swap_rate"] == 0.0   # no mirror joint
    assert mirror_index(CROWDPOSE_KEYPOINTS)[:2] == [1, 0] and len(CROWDPOSE_SIGMAS) == 14


def test_other_keypoint_sets_are_refused_in_one_line(model, tmp_path):
    coco = json.loads(ANN.read_text())
    mpii = copy.deepcopy(coco)
    mpii["categories"][0]["keypoints"] = [f"joint_{j}" for j in range(16)]
    for a in mpii["annotations"]:
        a["keypoints"] = a["keypoints"][:48]
    with pytest.raises(ValueError, match="MPII is evaluated with PCKh") as e:
        evaluate(model, _write(tmp_path / "mpii.json", mpii), DATA, flip=False, progress=False)
    assert "\n" not in str(e.value)
    renamed = copy.deepcopy(coco)
    renamed["categories"][0]["keypoints"] = list(COCO_LONG_NAMES[::-1])
    with pytest.raises(ValueError, match="no OKS sigmas are known"):
        evaluate(model, _write(tmp_path / "renamed.json", renamed), DATA, flip=False, progress=False)


def test_a_missing_image_is_skipped_with_a_warning(model, gt_metrics, tmp_path, caplog):
    coco = json.loads(ANN.read_text())
    gone = copy.deepcopy(coco)
    gone["images"][1]["file_name"] = "missing.jpg"
    without = copy.deepcopy(coco)                 # the same file with that image and its people removed
    iid = without["images"].pop(1)["id"]
    without["annotations"] = [a for a in without["annotations"] if a["image_id"] != iid]
    caplog.set_level(logging.WARNING, logger="tpexplain")
    m = evaluate(model, _write(tmp_path / "gone.json", gone), DATA, flip=False, progress=False)
    assert m["skipped"] == ["missing.jpg"] and m["num_images"] == 3
    assert any("missing.jpg" in r.getMessage() for r in caplog.records)
    # the skipped image's people stay in the evaluation (COCOeval's imgIds) and count as not detected
    on_it = sum(a["image_id"] == iid and a["num_keypoints"] > 0 and not a["iscrowd"] for a in coco["annotations"])
    assert on_it > 0 and m["num_unread"] == on_it and m["num_annotated"] == 12
    ref = evaluate(model, _write(tmp_path / "without.json", without), DATA, flip=False, progress=False)
    assert m["num_people"] == ref["num_people"] and ref["num_annotated"] == 12 - on_it and ref["num_unread"] == 0
    assert m["AP"] <= gt_metrics["AP"] and m["AR"] <= gt_metrics["AR"]   # the same predictions, its people missed
    assert m["AR"] <= ref["AR"]                                # more people, the same hits


def test_cli_eval_with_detections_and_a_missing_image(tmp_path):
    coco = json.loads(ANN.read_text())
    coco["images"][0]["file_name"] = "missing.jpg"
    ann = _write(tmp_path / "ann.json", coco)
    dets = _write(tmp_path / "dets.json", [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"],
                                            "score": 0.9} for a in coco["annotations"] if a["num_keypoints"]])
    r = subprocess.run([sys.executable, "-m", "tpexplain", "eval", "--coco", ann, "--images", DATA,
                        "--detections", dets, "--no-flip"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr           # as batch: the results are printed, the status says not all
    lines = r.stdout.strip().splitlines()
    assert "missing.jpg" in r.stderr and "skipped 1 of 4 images" in lines[-2] and "missing.jpg" in lines[-2]
    assert lines[-1].startswith("AP=") and "PCK" not in r.stdout
    assert "over all 12 annotated people" in lines[-1] and "could not be read count as not detected" in lines[-1]


def test_an_unreadable_image_is_skipped_and_reported_like_batch(model, gt_metrics, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for p in DATA.glob("*.jpg"):
        (images / p.name).write_bytes(p.read_bytes())
    (images / "000000040083.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = subprocess.run([sys.executable, "-m", "tpexplain", "eval", "--coco", ANN, "--images", images, "--no-flip"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr                                              # exit status as batch
    assert "000000040083.jpg" in r.stderr and "cannot decode" in r.stderr          # one warning, as batch
    lines = r.stdout.strip().splitlines()
    assert lines[-2] == "skipped 1 of 4 images (not found or unreadable): 000000040083.jpg"
    # the AP line names what it covers: every annotated person, those on the unread image as not detected
    assert lines[-1].startswith("AP=") and float(lines[-1].split()[0][3:]) <= round(gt_metrics["AP"], 4)
    assert lines[-1].endswith("over all 12 annotated people: the 2 on the 1 image that could not be read "
                              "count as not detected"), lines[-1]
