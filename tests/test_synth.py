"""Behaviour of the synthetic people generator (tpexplain.training.synth)."""
from __future__ import annotations

import ast
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tpexplain.training import synth
from tpexplain.training.synth import make_dataset, render_image

SEEDS = range(40)


@pytest.fixture(scope="module")
def renders():
    """(seed, image, people, owner, extras) for a fixed set of seeds, rendered once."""
    return [(s, *synth._render(s)) for s in SEEDS]


def _upright(kp: np.ndarray) -> bool:
    if (kp[[5, 6, 11, 12], 2] == 0).any():
        return False
    spine = (kp[5, :2] + kp[6, :2]) / 2 - (kp[11, :2] + kp[12, :2]) / 2
    return np.degrees(np.arctan2(abs(spine[0]), -spine[1])) < 20


def test_deterministic_for_a_seed():
    img1, ann1 = render_image(1234)
    img2, ann2 = render_image(1234)
    assert img1.tobytes() == img2.tobytes()
    assert len(ann1) == len(ann2)
    for a, b in zip(ann1, ann2):
        assert np.array_equal(a["keypoints"], b["keypoints"])
        assert a["bbox"] == b["bbox"] and a["area"] == b["area"]
        assert (a["view"], a["pose"]) == (b["view"], b["pose"])


def test_different_seeds_differ():
    a, _ = render_image(1)
    b, _ = render_image(2)
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_output_types_and_conventions(renders):
    n_people = 0
    for seed, img, people, owner, _ in renders:
        h, w = img.shape[:2]
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert 256 <= h <= 512 and 256 <= w <= 512
        assert owner.shape == (h, w)
        assert 1 <= len(people) <= 3
        for p in people:
            n_people += 1
            kp = p["keypoints"]
            assert kp.shape == (17, 3) and kp.dtype == np.float32
            v = kp[:, 2]
            assert set(np.unique(v)) <= {0.0, 1.0, 2.0}
            assert (kp[v == 0, :2] == 0).all(), f"seed {seed}: unlabelled keypoints must be (0, 0)"
            lab = kp[v > 0]
            assert ((lab[:, 0] >= 0) & (lab[:, 0] <= w - 1) & (lab[:, 1] >= 0) & (lab[:, 1] <= h - 1)).all()
            x, y, bw, bh = p["bbox"]
            assert x >= 0 and y >= 0 and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h
            vis = kp[v == 2]
            tol = 2.0
            assert ((vis[:, 0] >= x - tol) & (vis[:, 0] <= x + bw + tol)).all(), f"seed {seed}"
            assert ((vis[:, 1] >= y - tol) & (vis[:, 1] <= y + bh + tol)).all(), f"seed {seed}"
            assert 0 < p["area"] <= bw * bh
            assert p["view"] in synth._VIEWS
            assert p["pose"] in synth._POSES
    assert n_people > len(renders)  # several people per image sometimes


def test_people_are_sized_like_the_brief(renders):
    # the main person usually fills 40-95% of the image's limiting dimension
    fracs = [max(p["bbox"][3] / img.shape[0], p["bbox"][2] / img.shape[1])
             for _, img, people, _, _ in renders for p in people[:1]]
    assert np.median(fracs) > 0.4


def test_left_right_follow_the_view():
    counts = {"front": 0, "back": 0, "left": 0, "right": 0}
    for seed in range(150):
        _, people = render_image(seed, min_people=1, max_people=1)
        for p in people:
            kp, view = p["keypoints"], p["view"]
            if not _upright(kp) or p["pose"] == "random":
                continue
            counts[view] += 1
            if view == "front":  # the person's left appears on the image's right
                assert kp[5, 0] > kp[6, 0] and kp[11, 0] > kp[12, 0], f"seed {seed}"
            elif view == "back":
                assert kp[5, 0] < kp[6, 0] and kp[11, 0] < kp[12, 0], f"seed {seed}"
            elif view == "left" and kp[0, 2] > 0 and kp[3, 2] > 0:  # facing the image's left
                assert kp[0, 0] < kp[3, 0], f"seed {seed}"
            elif view == "right" and kp[0, 2] > 0 and kp[4, 2] > 0:
                assert kp[0, 0] > kp[4, 0], f"seed {seed}"
    assert min(counts.values()) >= 5, counts


def test_visibility_mostly_visible_some_occluded(renders):
    v = np.concatenate([p["keypoints"][:, 2] for _, _, people, _, _ in renders for p in people])
    labelled = v[v > 0]
    assert (labelled == 1).sum() > 0.05 * len(labelled)
    assert (labelled == 2).sum() > 0.5 * len(labelled)
    # most people show many keypoints
    n_vis = [int((p["keypoints"][:, 2] == 2).sum()) for _, _, people, _, _ in renders for p in people]
    assert np.mean(n_vis) >= 8


def _centre_owner(owner: np.ndarray, kp: np.ndarray) -> int:
    return int(owner[int(round(kp[1])), int(round(kp[0]))])


def test_keypoints_under_occluders_are_occluded():
    found = 0
    for seed in range(200):
        _, people, owner, extras = synth._render(seed)
        if not extras["occluders"]:
            continue
        for p in people:
            for k in p["keypoints"]:
                if k[2] > 0 and _centre_owner(owner, k) >= synth._OCCLUDER_BASE:
                    assert k[2] == 1, f"seed {seed}: keypoint under an occluder marked visible"
                    found += 1
        if found >= 3:
            break
    assert found >= 3, "occluders never covered a keypoint"


def test_keypoints_under_other_people_are_occluded(renders):
    found = 0
    for seed, _, people, owner, extras in renders:
        for p, base in zip(people, extras["bases"]):
            for k in p["keypoints"]:
                if k[2] == 0:
                    continue
                o = _centre_owner(owner, k)
                if 0 < o < synth._OCCLUDER_BASE and not base <= o < base + synth._IDS_PER_PERSON:
                    assert k[2] == 1, f"seed {seed}: keypoint under another person marked visible"
                    found += 1
    assert found > 0


def test_visible_keypoints_sit_on_their_own_body(renders):
    for seed, _, people, owner, extras in renders:
        for p, base in zip(people, extras["bases"]):
            for j, k in enumerate(p["keypoints"]):
                if k[2] == 2:
                    part = _centre_owner(owner, k) - base
                    assert part in synth._KP_PARTS[j], f"seed {seed}, keypoint {j} on part {part}"


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def test_make_dataset_is_valid_coco(tmp_path: Path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = make_dataset(tmp_path / "ds", 6, seed=5)
    assert path == tmp_path / "ds" / "annotations.json"
    files = sorted((tmp_path / "ds" / "images").iterdir())
    assert [f.name for f in files] == [f"{i:012d}.jpg" for i in range(1, 7)]
    assert not list((tmp_path / "ds").glob(".*tmp"))
    coco = _quiet(COCO, str(path))
    data = json.loads(path.read_text())
    assert data["info"]["seed"] == 5 and data["info"]["n"] == 6
    cat = data["categories"][0]
    assert cat["id"] == 1 and cat["name"] == "person" and len(cat["keypoints"]) == 17
    assert min(min(e) for e in cat["skeleton"]) == 1  # 1-based
    assert len(coco.getImgIds()) == 6
    for img in data["images"]:
        assert {"id", "file_name", "width", "height"} <= set(img)
    anns = data["annotations"]
    assert anns and len({a["id"] for a in anns}) == len(anns)
    for a in anns:
        kp = np.array(a["keypoints"]).reshape(17, 3)
        assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
        assert a["category_id"] == 1 and a["iscrowd"] == 0 and len(a["bbox"]) == 4 and a["area"] > 0
    # the ground truth scored against itself is perfect
    dets = [dict(image_id=a["image_id"], category_id=1, keypoints=a["keypoints"], score=1.0)
            for a in anns if a["num_keypoints"] > 0]
    ev = _quiet(lambda: COCOeval(coco, coco.loadRes(dets), "keypoints"))
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    assert ev.stats[0] == pytest.approx(1.0)


def test_make_dataset_matches_render_and_seeds_do_not_overlap(tmp_path: Path):
    path = make_dataset(tmp_path, 2, seed=7, max_people=2)
    data = json.loads(path.read_text())
    img, people = render_image(7 * 1_000_003 + 1, max_people=2)
    assert data["images"][1]["width"] == img.shape[1] and data["images"][1]["height"] == img.shape[0]
    anns = [a for a in data["annotations"] if a["image_id"] == 2]
    assert len(anns) == len(people)
    np.testing.assert_allclose(np.array(anns[0]["keypoints"]).reshape(17, 3), people[0]["keypoints"], atol=0.01)
    other = json.loads(make_dataset(tmp_path / "other", 2, seed=8, max_people=2).read_text())
    assert other["images"] != data["images"] or other["annotations"] != data["annotations"]


def test_interrupted_make_dataset_leaves_no_annotation_file(tmp_path: Path, monkeypatch):
    calls = []

    def flaky(seed, **kw):
        calls.append(seed)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return render_image(seed, **kw)

    monkeypatch.setattr(synth.dataset, "render_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_dataset(tmp_path, 5)
    assert not (tmp_path / "annotations.json").exists()
    assert not [f for f in tmp_path.rglob("*") if f.name.startswith(".")]  # no temporary files left


def test_package_imports_only_numpy_cv2_and_light_tpexplain_modules():
    third_party = set()
    for path in Path(synth.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                third_party |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                third_party.add(node.module if node.module.startswith("tpexplain") else node.module.split(".")[0])
    stdlib = {"__future__", "colorsys", "dataclasses", "gzip", "importlib", "json", "math", "pathlib", "functools"}
    assert third_party - stdlib == {"numpy", "cv2", "tpexplain.keypoints", "tpexplain.io", "tpexplain.progress"}


def test_argument_checks(tmp_path: Path):
    with pytest.raises(ValueError):
        render_image(0, min_people=3, max_people=1)
    with pytest.raises(ValueError):
        make_dataset(tmp_path, 1, seed=-1)
    _, people = render_image(3, min_people=2, max_people=2)
    assert len(people) <= 2
