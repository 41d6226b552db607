"""Fidelity to the official implementations: keypoint decoding, a keypoint's query token, training dropout."""
import dataclasses
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import tpexplain as tpx
from tpexplain import zoo
from tpexplain.decode import BLUR_KERNEL, argmax_coords, decode
from tpexplain.layout import TokenLayout
from tpexplain.transforms import apply_affine, gaussian_targets

from conftest import SKIER, SKIER_BOX

BOX = tuple(float(v) for v in SKIER_BOX.split(","))


def broad_peak_with_spike() -> np.ndarray:
    """A wide Gaussian centred at (20, 30) whose argmax is a spike 3 px away, at (23, 30)."""
    ys, xs = np.mgrid[0:64, 0:48].astype(np.float32)
    hm = np.exp(-((xs - 20) ** 2 + (ys - 30) ** 2) / (2 * 5 ** 2)).astype(np.float32)
    hm[30, 23] = 1.2
    return hm[None, None]


def test_official_decoding_takes_the_long_newton_step_and_guarded_keeps_the_argmax():
    hm = broad_peak_with_spike()
    official, _ = decode(hm)
    guarded, _ = decode(hm, method="guarded")
    assert np.allclose(guarded[0, 0], [23, 30])                   # step of ~2.7 px refused
    assert abs(official[0, 0, 0] - 20) < 0.5 and official[0, 0, 1] == 30   # taken: lands on the broad peak


def test_official_decoding_refines_a_map_whose_blurred_maximum_is_not_positive():
    hm = -np.ones((1, 1, 64, 48), np.float32)
    hm[0, 0, 30, 20], hm[0, 0, 30, 22] = 0.5, 0.3      # positive argmax, but every blurred value is < 0
    pad = (BLUR_KERNEL - 1) // 2
    blurred = cv2.GaussianBlur(np.pad(hm[0, 0].astype(np.float64), pad), (BLUR_KERNEL,) * 2, 0)
    assert blurred.max() < 0        # the official rescale (max / blurred max) flips the map's sign
    official, _ = decode(hm)
    guarded, _ = decode(hm, method="guarded")
    assert np.allclose(guarded[0, 0], [20, 30])
    assert official[0, 0, 0] > 20.5 and official[0, 0, 1] == 30


def test_both_decodings_recover_a_subpixel_gaussian_and_skip_the_border():
    target, _ = gaussian_targets(np.array([[20.3, 30.7, 2], [1.0, 30.0, 2]]), (64, 48))
    for method in ("official", "guarded"):
        coords, _ = decode(target[None], method=method)
        assert np.allclose(coords[0, 0], [20.3, 30.7], atol=0.05)
        assert np.allclose(coords[0, 1], [1, 30])     # argmax within 2 px of the border: not refined
    udp, _ = decode(target[None], udp=True)            # ViTPose's official (mmpose post_dark_udp)
    assert np.allclose(udp[0, 0], [20.3, 30.7], atol=0.01)
    with pytest.raises(ValueError, match="official or guarded"):
        decode(target[None], method="exact")


def test_nonpositive_map_keeps_zero_coords():
    coords, scores = argmax_coords(-np.ones((1, 1, 8, 6), np.float32))
    assert (decode(-np.ones((1, 1, 64, 48), np.float32))[0] == 0).all() and scores[0, 0] == -1


@pytest.fixture(scope="module")
def explanation():
    return tpx.load("default", weights="random").explain(str(SKIER), bbox=BOX, flip=False)


def _with_heatmap_point(ex, k: int, x_hm: float, y_hm: float):
    """The explanation with keypoint k predicted at heatmap point (x_hm, y_hm), consistently in crop pixels."""
    hm = ex.keypoints_heatmap.copy()
    hm[k] = (x_hm, y_hm)
    crop = ex.keypoints_crop.copy()
    crop[k] = apply_affine(apply_affine(np.array([x_hm, y_hm]), ex.crop.from_heatmap), ex.crop.to_crop)
    return dataclasses.replace(ex, keypoints_heatmap=hm, keypoints_crop=crop)


def test_official_query_token_is_the_visualisations_formula(explanation):
    ex = explanation
    k = ex.keypoint("l_wrist")
    # 4·x+0.5 = 47.9 → column 5, but the affine puts the point at crop x 48.16 → column 6;
    # 4·y+0.5 = 16.1 → row 2, but crop y = 4.0638·3.9 − 0.51 = 15.34 → row 1
    e = _with_heatmap_point(ex, k, 11.85, 3.9)
    gw = ex.layout.grid[1]
    assert e.query_info(k) == {**e.query_info(k), "query": "official", "row": 2, "col": 5, "token": 2 * gw + 5}
    geo = e.query_info(k, query="geometric")
    assert (geo["row"], geo["col"]) == (1, 6)
    assert np.allclose(e.keypoints_crop[k], [48.16, 15.34], atol=0.01)
    # the maps follow: dependency row of token (2, 5) by default, of (1, 6) geometrically
    assert e.dependency(k).token == 2 * gw + 5 and e.dependency(k, query="geometric").token == gw + 6
    assert "token r2 c5" in e.dependency(k).title and "official" in e.dependency(k).title
    assert np.allclose(e.dependency(k).values.ravel(), e.attention[-1].rows([2 * gw + 5])[0, :, 0].mean(0))
    # where the formulas agree, so do the tokens: 4·10+0.5 = 40.5 and 40.64 are both in column 5
    same = _with_heatmap_point(ex, k, 10.0, 20.0)
    assert same.query(k)[0] == same.query(k, query="geometric")[0]
    # the geometric default of an explanation applies to every map it draws
    assert dataclasses.replace(e, query_convention="geometric").dependency(k).token == gw + 6


def test_query_token_is_clamped_and_keypoint_tokens_are_unchanged(explanation):
    k = explanation.keypoint("nose")
    off = _with_heatmap_point(explanation, k, -3.0, 70.0)     # pushed off the grid by a long Newton step
    gh, gw = explanation.layout.grid
    assert off.query_info(k)["row"] == gh - 1 and off.query_info(k)["col"] == 0
    names = explanation.keypoint_names
    tokenpose_like = dataclasses.replace(explanation, layout=TokenLayout((16, 16), (16, 12), special=names))
    assert tokenpose_like.query("l_ankle")[0] == names.index("l_ankle")
    assert tokenpose_like.query_info("l_ankle")["query"] == "keypoint token"


def test_explain_and_predict_take_the_decoding(explanation):
    pm = tpx.load("default", weights="random")
    official = pm.predict(str(SKIER), [BOX], flip=False)
    guarded = pm.predict(str(SKIER), [BOX], flip=False, decode="guarded")
    assert np.allclose(explanation.keypoints_heatmap, decode(explanation.heatmaps[None].numpy())[0][0])
    hm = official.heatmaps.float().numpy()
    assert np.allclose(official.keypoints_heatmap, decode(hm)[0])
    assert np.allclose(guarded.keypoints_heatmap, decode(hm, method="guarded")[0])
    pm.decode = "guarded"
    ex = pm.explain(str(SKIER), bbox=BOX, flip=False)
    assert np.allclose(ex.keypoints_heatmap, decode(ex.heatmaps[None].numpy(), method="guarded")[0][0])


def test_zoo_transpose_models_train_with_the_official_dropout_and_evaluate_unchanged():
    torch.manual_seed(0)
    official = zoo.build("tp-r-a3")
    mods = [m for m in official.modules() if hasattr(m, "attn_dropout") and hasattr(m, "in_proj_weight")]
    assert mods and all(m.attn_dropout == 0.1 for m in mods)
    assert all(m.p == 0.1 for m in official.modules() if isinstance(m, torch.nn.Dropout))
    from tpexplain.models.transpose import TransPoseR
    no_dropout = TransPoseR(num_layers=3, dropout=0.0, attn_dropout=0.0)
    assert list(no_dropout.state_dict()) == list(official.state_dict())
    no_dropout.load_state_dict(official.state_dict())
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        assert torch.equal(official.eval()(x), no_dropout.eval()(x))
    default = zoo.build("default")
    assert all(m.attn_dropout == 0.0 for m in default.modules() if hasattr(m, "in_proj_weight"))


def test_cli_layers_names_the_queried_token(tmp_path):
    out = tmp_path / "l.png"
    args = ["layers", str(SKIER), "-k", "l_wrist", "--bbox", SKIER_BOX, "--weights", "random", "--no-flip",
            "-o", str(out)]
    res = subprocess.run([sys.executable, "-m", "tpexplain", *args, "--query", "geometric", "--decode", "guarded"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    q = json.loads(out.with_suffix(".json").read_text())["queries"][0]
    assert q["keypoint"] == "l_wrist" and q["query"] == "geometric" and {"row", "col", "token_center_crop"} <= set(q)
