"""Layer-depth metrics and body regions on constructed attention maps whose answers are known."""
import json

import numpy as np
import pytest
import torch

from tpexplain.analysis import (attention_entropy, layer_metrics, layer_study, mass_within,
                                mean_attention_distance, person_size, region_masks, region_masses)
from tpexplain.analysis.depth import default_radius, token_centers
from tpexplain.keypoints import COCO_KEYPOINTS
from tpexplain.layout import TokenLayout
from tpexplain.record import LayerAttention

from conftest import SKIER

LAYOUT = TokenLayout(grid=(8, 6), stride=(8.0, 8.0))


def one_hot(layout, row, col):
    p = np.zeros(layout.grid)
    p[row, col] = 1.0
    return p


def test_concentrated_map_has_zero_distance_and_entropy():
    p = one_hot(LAYOUT, 3, 2)
    q = LAYOUT.token_center(3 * 6 + 2)
    assert q == (20.0, 28.0)
    assert attention_entropy(p) == 0.0
    assert mean_attention_distance(p, LAYOUT, q) == 0.0
    assert mass_within(p, LAYOUT, q, 0.0) == 1.0


def test_uniform_map_has_the_highest_entropy():
    n = LAYOUT.num_visual
    uniform = np.full(LAYOUT.grid, 7.0)               # unnormalised on purpose
    assert attention_entropy(uniform) == pytest.approx(np.log(n))
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.random(LAYOUT.grid) ** 3
        assert 0.0 < attention_entropy(p) < np.log(n)
    # two equal peaks: log 2
    p = one_hot(LAYOUT, 0, 0) + one_hot(LAYOUT, 7, 5)
    assert attention_entropy(p) == pytest.approx(np.log(2))


def test_distance_and_mass_on_known_maps():
    q = (4.0, 4.0)                                    # centre of token (0, 0)
    far = one_hot(LAYOUT, 7, 5)                       # centre (44, 60)
    assert mean_attention_distance(far, LAYOUT, q) == pytest.approx(np.hypot(40, 56))
    half = 0.5 * one_hot(LAYOUT, 0, 0) + 0.5 * far
    assert mean_attention_distance(half, LAYOUT, q) == pytest.approx(0.5 * np.hypot(40, 56))
    assert mass_within(half, LAYOUT, q, 10.0) == pytest.approx(0.5)
    assert mass_within(half, LAYOUT, q, 100.0) == pytest.approx(1.0)
    # uniform: the mean of the distances to all token centres
    c = token_centers(LAYOUT).reshape(-1, 2)
    expected = np.hypot(c[:, 0] - 4, c[:, 1] - 4).mean()
    assert mean_attention_distance(np.ones(48), LAYOUT, q) == pytest.approx(expected)
    # scale does not matter, flat or grid shape alike
    assert mean_attention_distance(3 * half.ravel(), LAYOUT, q) == pytest.approx(0.5 * np.hypot(40, 56))


def test_bad_maps_are_refused():
    with pytest.raises(ValueError, match="token grid"):
        mean_attention_distance(np.ones(10), LAYOUT, (0, 0))
    with pytest.raises(ValueError, match="no positive mass"):
        attention_entropy(np.zeros(5))
    with pytest.raises(ValueError, match="radius"):
        mass_within(np.ones(48), LAYOUT, (0, 0), -1)


# ---------------------------------------------------------------------------------------------------
# On an Explanation whose attention and pose we set by hand

# a standing person in the 256x192 crop (x, y), COCO order
POSE = np.array([
    [96, 40], [90, 34], [102, 34], [82, 38], [110, 38],        # head
    [76, 70], [116, 70], [66, 110], [126, 110], [60, 146], [132, 146],   # arms
    [84, 140], [108, 140], [82, 186], [110, 186], [80, 230], [112, 230],  # legs
], dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_ex():
    """A real Explanation from a tiny TransPose-R (so every field is genuine), pose then set by hand."""
    from tpexplain.api import PoseModel
    from tpexplain.models.transpose import TransPoseR
    torch.manual_seed(0)
    model = TransPoseR(num_layers=2, d_model=32, nhead=2, dim_feedforward=64, stem_channels=8, blocks=(1, 1),
                       planes=(8, 16), deconv_channels=16)
    ex = PoseModel(model, "tiny").explain(str(SKIER), bbox=(280.79, 44.73, 218.7, 346.68), flip=False)
    ex.keypoints_crop = POSE.copy()
    return ex


def with_attention(ex, rows_per_layer):
    """Every query's row in layer l is rows_per_layer[l] (a map on the token grid)."""
    import copy
    ex = copy.copy(ex)
    n = ex.layout.num_visual
    ex.attention = [LayerAttention(probs=torch.as_tensor(np.tile(r.reshape(1, n) / r.sum(), (n, 1)),
                                                         dtype=torch.float32)[None, None]) for r in rows_per_layer]
    return ex


def test_person_size_is_the_keypoint_box_diagonal(tiny_ex):
    assert person_size(tiny_ex) == pytest.approx(np.hypot(132 - 60, 230 - 34))
    assert default_radius(tiny_ex) == pytest.approx(0.1 * np.hypot(72, 196))


def test_layer_metrics_global_then_local(tiny_ex):
    lay = tiny_ex.layout
    k = COCO_KEYPOINTS.index("l_ankle")
    tok = lay.token_at(*POSE[k])
    row, col = divmod(tok, lay.grid[1])
    ex = with_attention(tiny_ex, [np.ones(lay.grid), one_hot(lay, row, col)])
    rows = layer_metrics(ex, "l_ankle")
    assert [r["layer"] for r in rows] == [1, 2]
    first, last = rows
    assert first["entropy"] == pytest.approx(np.log(lay.num_visual)) == pytest.approx(first["entropy_max"])
    assert last["entropy"] == 0.0
    centre = lay.token_center(tok)
    d = np.hypot(centre[0] - POSE[k, 0], centre[1] - POSE[k, 1])
    assert last["distance_px"] == pytest.approx(d)
    assert last["distance_body"] == pytest.approx(d / person_size(ex))
    assert last["mass_within"] == 1.0 and first["mass_within"] < 0.1
    assert first["distance_px"] > 50 > last["distance_px"]
    assert set(rows[0]) >= {"layer", "entropy", "entropy_max", "distance_px", "distance_body", "mass_within",
                            "radius_px"}


def test_layer_study_outputs(tiny_ex, tmp_path):
    import matplotlib.pyplot as plt
    study = layer_study(tiny_ex, ["l_wrist", "r_ankle"])
    assert [(r["keypoint"], r["layer"]) for r in study.metrics] == \
        [("l_wrist", 1), ("l_wrist", 2), ("r_ankle", 1), ("r_ankle", 2)]
    table = study.table().splitlines()
    assert len(table) == 5 and "entropy" in table[0]
    text = study.to_csv(tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_bytes() == text.encode() and text.endswith("\r\n")
    lines = text.splitlines()
    assert lines[0].startswith("keypoint,layer,entropy") and len(lines) == 5
    data = json.loads(study.to_json(tmp_path / "m.json"))
    assert (tmp_path / "m.json").read_text() == study.to_json()
    assert data["metrics"] == json.loads(json.dumps(study.metrics))
    assert study._repr_png_()[:4] == b"\x89PNG"
    plt.close("all")
    assert len(layer_study(tiny_ex, "all").metrics) == 17 * 2
    with pytest.raises(ValueError, match="did you mean"):
        layer_study(tiny_ex, "l_ankel")
    with pytest.raises(ValueError, match="head 5 out of range"):
        layer_study(tiny_ex, "nose", head=5)


# ---------------------------------------------------------------------------------------------------
# Regions

def test_region_masks_partition_the_grid(tiny_ex):
    lay = tiny_ex.layout
    masks = region_masks(tiny_ex, "l_ankle", radius=12)
    assert list(masks) == ["own", "symmetric", "adjacent", "head", "person", "background"]
    stack = np.stack(list(masks.values()))
    assert (stack.sum(0) == 1).all()                       # disjoint and covering

    def at(name):
        row, col = divmod(lay.token_at(*POSE[COCO_KEYPOINTS.index(name)]), lay.grid[1])
        return row, col
    assert masks["own"][at("l_ankle")]
    assert masks["symmetric"][at("r_ankle")]
    assert masks["adjacent"][at("l_knee")] and not masks["adjacent"][at("r_knee")]
    assert masks["head"][at("nose")]
    assert masks["person"][at("r_knee")] and masks["person"][at("l_shoulder")]
    assert masks["person"][lay.token_at(96, 105) // lay.grid[1], lay.token_at(96, 105) % lay.grid[1]]  # torso
    assert masks["background"][0, 0] and masks["background"][-1, -1]
    # the nose has no mirror; its eyes are adjacent
    nose = region_masks(tiny_ex, "nose", radius=5)
    assert not nose["symmetric"].any() and nose["adjacent"][at("l_eye")]


def test_region_masses(tiny_ex):
    lay = tiny_ex.layout
    k = COCO_KEYPOINTS.index("r_ankle")
    row, col = divmod(lay.token_at(*POSE[k]), lay.grid[1])
    m = region_masses(tiny_ex, one_hot(lay, row, col), "l_ankle")
    assert m["symmetric"] == 1.0 and sum(m.values()) == pytest.approx(1.0)
    masks = region_masks(tiny_ex, "l_ankle")
    uniform = region_masses(tiny_ex, np.ones(lay.grid), "l_ankle")
    for name, mask in masks.items():
        assert uniform[name] == pytest.approx(mask.sum() / lay.num_visual)
    with pytest.raises(ValueError, match="token grid"):
        region_masses(tiny_ex, np.ones(7), "l_ankle")
