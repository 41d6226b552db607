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


# ---------------------------------------------------------------------------------------------------
# An independent re-check: the official decoding written again from its description (TransPose's
# lib/core/inference.py `get_final_preds`; mmpose 0.x `keypoints_from_heatmaps(use_udp=True)`, i.e.
# `_get_max_preds` + `post_dark_udp` + `transform_preds`), in the official code's own style (whole-batch
# arrays, flattened indexing), not through tpexplain.decode.

def ref_get_final_preds(batch: np.ndarray, kernel: int = 11) -> np.ndarray:
    """Heatmap-space keypoints as get_final_preds(transform_back=False): argmax (0 where the peak <= 0),
    then on log(max(rescaled zero-border blur, 1e-10)) one Taylor step if 1 < px < W-2, 1 < py < H-2, det != 0."""
    n, k, h, w = batch.shape
    flat = batch.reshape(n, k, -1)
    idx, peak = flat.argmax(2), flat.max(2)
    coords = np.stack([idx % w, idx // w], -1).astype(np.float32) * (peak > 0)[..., None]
    border = (kernel - 1) // 2
    for i in range(n):
        for j in range(k):
            big = np.zeros((h + 2 * border, w + 2 * border))
            big[border:-border, border:-border] = batch[i, j]
            smooth = np.float32(cv2.GaussianBlur(big, (kernel, kernel), 0)[border:-border, border:-border])
            with np.errstate(invalid="ignore", divide="ignore"):    # a flat map: 0 / 0, as in the original
                smooth = smooth * (batch[i, j].max() / smooth.max())
            lg = np.log(np.maximum(smooth, 1e-10))
            px, py = int(coords[i, j, 0]), int(coords[i, j, 1])
            if not (1 < px < w - 2 and 1 < py < h - 2):
                continue
            g = np.array([lg[py, px + 1] - lg[py, px - 1], lg[py + 1, px] - lg[py - 1, px]]) / 2
            hxx = (lg[py, px + 2] - 2 * lg[py, px] + lg[py, px - 2]) / 4
            hyy = (lg[py + 2, px] - 2 * lg[py, px] + lg[py - 2, px]) / 4
            hxy = (lg[py + 1, px + 1] - lg[py - 1, px + 1] - lg[py + 1, px - 1] + lg[py - 1, px - 1]) / 4
            if hxx * hyy - hxy ** 2 != 0:
                coords[i, j] += -np.linalg.inv(np.array([[hxx, hxy], [hxy, hyy]])) @ g
    return coords


def ref_post_dark_udp(batch: np.ndarray, kernel: int = 11) -> np.ndarray:
    """mmpose's UDP path: argmax (-1 where the peak <= 0), blur (reflected border) in place, clip to
    [0.001, 50], log, edge-pad by 1, then read the 3x3 neighbourhood from the whole batch flattened and take
    one Newton step with the Hessian + float32 eps · I."""
    n, k, h, w = batch.shape
    maps = batch.astype(np.float32).copy()
    flat = maps.reshape(n, k, -1)
    idx, peak = flat.argmax(2), flat.max(2)
    coords = np.where((peak > 0)[..., None], np.stack([idx % w, idx // w], -1).astype(np.float32), -1)
    for m in maps.reshape(-1, h, w):
        cv2.GaussianBlur(m, (kernel, kernel), 0, m)
    padded = np.pad(np.log(np.clip(maps, 0.001, 50)), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge").ravel()
    stride = w + 2
    at = (coords[..., 0] + 1 + (coords[..., 1] + 1) * stride).astype(int)
    at = at + stride * (h + 2) * np.arange(n * k).reshape(n, k)
    v = {(dx, dy): padded[at + dx + dy * stride] for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    gx, gy = (v[1, 0] - v[-1, 0]) / 2, (v[0, 1] - v[0, -1]) / 2
    hxx, hyy = v[1, 0] - 2 * v[0, 0] + v[-1, 0], v[0, 1] - 2 * v[0, 0] + v[0, -1]
    hxy = (v[1, 1] - v[1, 0] - v[0, 1] + 2 * v[0, 0] - v[-1, 0] - v[0, -1] + v[-1, -1]) / 2
    hess = np.stack([hxx, hxy, hxy, hyy], -1).reshape(n, k, 2, 2) + np.finfo(np.float32).eps * np.eye(2)
    return coords - np.einsum("nkij,nkj->nki", np.linalg.inv(hess), np.stack([gx, gy], -1))


def ref_transpose_back(coords, center, scale, heatmap_size=(48, 64)):
    """TransPose's transform_preds: the "−1" similarity, heatmap centre (size − 1)/2 onto the box centre,
    (200·s_w − 1)/(W_hm − 1) image px per heatmap px on both axes."""
    size = np.asarray(heatmap_size, float)
    return center + (coords - (size - 1) / 2) * (scale[0] * 200 - 1) / (size[0] - 1)


def hard_heatmaps(seed: int = 0) -> np.ndarray:
    """Peaks with noise, at the border, flat, negative (empty) and two-peaked maps: (3, 17, 64, 48)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:64, 0:48].astype(np.float32)
    maps = rng.normal(0, 0.02, (3, 17, 64, 48)).astype(np.float32)
    for i in range(3):
        for j in range(17):
            cx, cy, s = rng.uniform(-2, 50), rng.uniform(-2, 66), rng.uniform(1, 6)
            maps[i, j] += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * s * s))
            if j % 5 == 1:
                maps[i, j] += 0.8 * np.exp(-((xs - cx - 4) ** 2 + (ys - cy) ** 2) / 8)
    maps[0, 0] = -np.abs(maps[0, 0]) - 0.1      # empty maps: the first of the batch, and one inside it
    maps[1, 7] = -np.abs(maps[1, 7]) - 0.1
    maps[2, 3] = 0.0                             # flat
    return maps


@pytest.mark.parametrize("source", ["synthetic", "model"])
def test_official_decoding_equals_an_independent_reimplementation(source):
    if source == "synthetic":
        maps = hard_heatmaps()
    else:    # a random-weight model's maps: flat-ish and many-peaked, long Newton steps
        pm = tpx.load("default", weights="random")
        maps = pm.predict(str(SKIER), [BOX, (100, 50, 120, 300)], flip=True).heatmaps.float().numpy()
    ours, _ = decode(maps)
    assert np.abs(ours - ref_get_final_preds(maps)).max() < 1e-4
    udp, _ = decode(maps, udp=True)
    want = ref_post_dark_udp(maps)
    finite = np.isfinite(want).all(-1)
    assert finite.mean() > 0.9 and np.abs(udp - want)[finite].max() < 1e-4


def ref_box2cs(box, aspect=192 / 256):
    """TransPose's box → centre (x + (w − 1)/2), scale (padded to the aspect, /200, ×1.25)."""
    x, y, w, h = box
    center = np.array([x + (w - 1) / 2, y + (h - 1) / 2])
    w, h = (w, w / aspect) if w > aspect * h else (h * aspect, h)
    return center, np.array([w, h]) / 200 * 1.25


def test_keypoints_and_query_tokens_equal_the_official_path_end_to_end():
    """TransPose: image keypoints as get_final_preds(transform_back=True) to 1e-3 px; every keypoint's query
    token as the demo notebook's query_locations = preds·4 + 0.5 → int(· / down_rate) (visualize.py)."""
    pm = tpx.load("default", weights="random")
    boxes = [BOX, (100.0, 50.0, 120.0, 300.0)]
    poses = pm.predict(str(SKIER), boxes, flip=True)
    coords = ref_get_final_preds(poses.heatmaps.float().numpy())
    for i, box in enumerate(boxes):
        c, s = ref_box2cs(box)
        assert np.abs(poses.keypoints[i, :, :2] - ref_transpose_back(coords[i], c, s)).max() < 1e-3
    ex = pm.explain(str(SKIER), bbox=BOX, flip=True)
    gh, gw = ex.layout.grid
    down = 256 // gh
    locations = coords[0] * 4 + 0.5
    inside = 0
    for k in range(17):
        col, row = int(locations[k, 0] / down), int(locations[k, 1] / down)
        if 0 <= row < gh and 0 <= col < gw:
            inside += 1
        else:   # a random model's unguarded Newton step can leave the map: the official code fails, we clamp
            col, row = min(max(col, 0), gw - 1), min(max(row, 0), gh - 1)
        assert ex.query(k)[0] == row * gw + col
    assert inside >= 12
