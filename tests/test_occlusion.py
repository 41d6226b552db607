"""Occlusion: hiding, body parts, the sweep on a model whose sensitivity is known, the fast sweep against the
naive per-window forward, the studies, and the `layers` / `occlusion` commands."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from tpexplain.analysis import (hide, occlusion_sensitivity, occlusion_study, part_region, symmetric_study)
from tpexplain.analysis.hiding import part_joints
from tpexplain.analysis.regions import region_masks
from tpexplain.analysis.sensitivity import crop_fill, fast_sweeper, occlude, sweep, window_starts
from tpexplain.api import PoseModel
from tpexplain.keypoints import COCO, COCO_KEYPOINTS, MPII
from tpexplain.layout import TokenLayout
from tpexplain.models.tokenpose import TokenPose
from tpexplain.models.transpose import TransPoseH, TransPoseR

from conftest import SKIER, SKIER_BOX

BOX = tuple(float(v) for v in SKIER_BOX.split(","))


# ---------------------------------------------------------------------------------------------------
# hide

def test_hide_mean_fills_only_the_region():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    out = hide(img, (5, 10, 8, 6), "mean")
    mean = np.rint(img.reshape(-1, 3).mean(0))
    assert (out[10:16, 5:13] == mean).all()
    inside = np.zeros((40, 30), bool)
    inside[10:16, 5:13] = True
    assert (out[~inside] == img[~inside]).all() and out.dtype == np.uint8
    # a box partly outside is clipped; a mask works the same
    assert (hide(img, (-5, -5, 10, 10))[:5, :5] == mean).all()
    assert (hide(img, inside) == out).all()


def test_hide_blur_and_noise():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    blurred = hide(img, (0, 0, 30, 20), "blur")
    assert blurred[:20].astype(float).std() < 0.5 * img[:20].astype(float).std()
    assert (blurred[20:] == img[20:]).all()
    a, b, c = (hide(img, (0, 0, 10, 10), "noise", seed=s) for s in (0, 0, 1))
    assert (a == b).all() and not (a == c).all()


def test_hide_refuses_bad_input():
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="covers no pixel"):
        hide(img, (100, 100, 5, 5))
    with pytest.raises(ValueError, match="width and height"):
        hide(img, (1, 1, 0, 5))
    with pytest.raises(ValueError, match="unknown fill"):
        hide(img, (1, 1, 5, 5), "zero")


# ---------------------------------------------------------------------------------------------------
# A model whose occlusion sensitivity is known: heatmap k peaks at one pixel whose value is 10 + the mean
# of an input patch P_k. Hiding a window drops it by the patch's mean change, exactly.

class PatchModel(nn.Module):
    image_size = (64, 48)

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.attn = nn.MultiheadAttention(4, 1, batch_first=True)     # something for explain() to record
        rng = np.random.default_rng(0)
        self.patches = [(int(rng.integers(0, 48)), int(rng.integers(0, 32)), int(rng.integers(4, 16)),
                         int(rng.integers(4, 16))) for _ in range(17)]           # y, x, h, w
        self.peaks = [(int(rng.integers(0, 16)), int(rng.integers(0, 12))) for _ in range(17)]

    @property
    def token_layout(self):
        return TokenLayout(grid=(8, 6), stride=(8.0, 8.0))

    def forward(self, x):
        t = self.embed(F.avg_pool2d(x, 8).flatten(2).transpose(1, 2))
        a = self.attn(t, t, t)[0]
        out = torch.zeros(x.shape[0], 17, 16, 12) + 0 * a.sum()
        for k, ((y, x0, h, w), (py, px)) in enumerate(zip(self.patches, self.peaks)):
            out[:, k, py, px] = 10 + x[:, :, y:y + h, x0:x0 + w].mean((1, 2, 3))
        return out


def test_sweep_on_a_model_with_known_sensitivity():
    torch.manual_seed(0)
    model = PatchModel()
    pm = PoseModel(model, "patch")
    img = np.random.default_rng(2).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    sm = occlusion_sensitivity(pm, img, window=8, stride=4, fill="mean")
    x = sm.explanation.input.numpy()
    fill = x.reshape(3, -1).mean(1)[:, None, None]          # the crop's mean colour
    assert np.allclose(crop_fill(sm.explanation.input, "mean", 8).numpy(), np.broadcast_to(fill, x.shape))
    assert sm.drops.shape == (17, len(window_starts(64, 8, 4)), len(window_starts(48, 8, 4)))
    for k, (y, x0, h, w) in enumerate(model.patches):
        expected = np.zeros(sm.drops.shape[1:])
        for i, wy in enumerate(sm.starts_y):
            for j, wx in enumerate(sm.starts_x):
                occ = x.copy()
                occ[:, wy:wy + 8, wx:wx + 8] = np.broadcast_to(fill, occ.shape)[:, wy:wy + 8, wx:wx + 8]
                expected[i, j] = x[:, y:y + h, x0:x0 + w].mean() - occ[:, y:y + h, x0:x0 + w].mean()
        assert np.allclose(sm.drops[k], expected, atol=1e-5), COCO_KEYPOINTS[k]
        assert tuple(sm.peaks[k]) == model.peaks[k][::-1]
        assert sm.clean[k] == pytest.approx(10 + x[:, y:y + h, x0:x0 + w].mean(), abs=1e-5)
        # windows that miss the patch change nothing
        for i, wy in enumerate(sm.starts_y):
            for j, wx in enumerate(sm.starts_x):
                if wy >= y + h or wy + 8 <= y or wx >= x0 + w or wx + 8 <= x0:
                    assert abs(sm.drops[k, i, j]) < 1e-6
    # Captum's per-pixel convention: a pixel gets the mean drop of the windows covering it
    px = sm.on_crop("nose")
    i, j = 2, 3
    covering = [sm.drops[0, a, b] for a, wy in enumerate(sm.starts_y) for b, wx in enumerate(sm.starts_x)
                if wy <= i < wy + 8 and wx <= j < wx + 8]
    assert px[i, j] == pytest.approx(np.mean(covering))
    # a map ranks identically to itself; the figure and JSON come out
    tokens = sm.on_tokens("l_ankle", model.token_layout)
    assert sm.rank_correlation(tokens, "l_ankle") == pytest.approx(1.0)
    assert sm.rank_correlation(-tokens, "l_ankle") == pytest.approx(-1.0)
    data = json.loads(sm.to_json())
    assert set(data["max_drop"]) == set(COCO_KEYPOINTS)
    import matplotlib.pyplot as plt
    plt.close(sm.figure("l_ankle"))
    plt.close(sm.figure(["l_ankle", "nose"]))


def test_sweep_refuses_bad_windows():
    pm = PoseModel(PatchModel(), "patch")
    img = np.zeros((64, 48, 3), np.uint8)
    with pytest.raises(ValueError, match="window 100"):
        occlusion_sensitivity(pm, img, window=100)
    with pytest.raises(ValueError, match="stride 9"):
        occlusion_sensitivity(pm, img, window=8, stride=9)
    with pytest.raises(ValueError, match="unknown fill"):
        occlusion_sensitivity(pm, img, fill="zero")
    # a stated bound on the number of forward passes, checked before any work
    from tpexplain.analysis.sensitivity import MAX_PASSES, sweep_passes
    assert sweep_passes(pm.input_size, 1, 1) == 64 * 48 and MAX_PASSES == 5000
    with pytest.raises(ValueError, match=r"3,072 forward passes .* more than the bound of 1,000"):
        occlusion_sensitivity(pm, img, window=1, stride=1, max_passes=1000)
    assert occlusion_sensitivity(pm, img, window=8, stride=8, max_passes=48).drops.shape[1:] == (8, 6)


# ---------------------------------------------------------------------------------------------------
# The fast TransPose sweep equals the naive per-window forward

def _randomise_batchnorm(model):
    """Default BatchNorm (mean 0, var 1, no shift) would hide padding mistakes: bn(0) must not be 0."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.5)
    return model.eval()


def tiny_transpose_r():
    torch.manual_seed(0)
    m = TransPoseR(num_layers=2, d_model=32, nhead=2, dim_feedforward=64, stem_channels=8, blocks=(2, 2),
                   planes=(8, 16), deconv_channels=16)
    nn.init.normal_(m.final_layer.weight, std=0.1)
    return _randomise_batchnorm(m)


def tiny_transpose_h():
    torch.manual_seed(0)
    m = TransPoseH(width=4, num_layers=2, d_model=16, nhead=2, dim_feedforward=32, image_size=(128, 96))
    for c in m.modules():      # the official init (std 0.001) makes the output nearly input-independent
        if isinstance(c, nn.Conv2d):
            nn.init.kaiming_normal_(c.weight)
    return _randomise_batchnorm(m)


def naive(model, x, fill, boxes, window, flat):
    """One plain forward per window: the definition the sweep must match."""
    out = []
    with torch.no_grad():
        for box in boxes:
            maps = model(occlude(x, fill, [box], window))[0]
            out.append(maps.flatten(1)[torch.arange(len(flat)), flat])
    return torch.stack(out).T.numpy()


@pytest.fixture
def flush_denormals():
    """The randomised tiny models produce denormal floats, which make CPU arithmetic ~100x slower."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


@pytest.mark.parametrize("build", [tiny_transpose_r, tiny_transpose_h])
def test_fast_sweep_equals_naive_loop(build, flush_denormals):
    model = build()
    h, w = model.image_size
    torch.manual_seed(1)
    x = torch.randn(3, h, w)
    fill = crop_fill(x, "blur", 40)
    window, stride = 40, 28        # the last column of windows overhangs the crop (Captum's placement)
    boxes = [(y, xx) for y in window_starts(h, window, stride) for xx in window_starts(w, window, stride)]
    boxes = boxes[:2] + boxes[9:12] + boxes[-3:]      # corners, edges, interior, overhang
    keypoints = list(range(17))
    with torch.no_grad():
        flat = model(x[None])[0].flatten(1).argmax(1)
    expected = naive(model, x, fill, boxes, window, flat)
    scale = np.abs(expected).max()
    # the fast path is the one tested; a subclass (which may change the forward) gets the plain one
    peaks = torch.stack([flat % (w // 4), flat // (w // 4)], 1)
    assert fast_sweeper(model, x, peaks, torch.arange(17)) is not None
    other = copy.copy(model)
    other.__class__ = type("Sub", (type(model),), {})
    assert fast_sweeper(other, x, peaks, torch.arange(17)) is None
    for batch in (1, 4):
        clean, peaks, drops = sweep(model, x, fill, boxes, window, keypoints, batch, fast=True)
        plain = sweep(model, x, fill, boxes, window, keypoints, batch, fast=False)[2]
        # the plain forward itself rounds differently at another batch size (~1e-5 relative here)
        assert np.abs(clean[:, None] - drops - expected).max() <= 1e-4 * scale, batch
        assert np.abs(drops - plain).max() <= 1e-5 * scale, batch
    assert np.abs(drops).max() > 1e-3 * scale                        # the windows do change the output
    # a subset of keypoints, and small windows at every corner
    small = [(0, 0), (0, w - 8), (h - 8, 0), (h - 8, w - 8), (h // 2, w // 2)]
    exp_small = naive(model, x, fill, small, 8, flat)
    clean, _, drops = sweep(model, x, fill, small, 8, [15, 3], 2, fast=True)
    assert np.allclose(clean[:, None] - drops, exp_small[[15, 3]], rtol=0, atol=1e-5 * np.abs(exp_small).max())


# ---------------------------------------------------------------------------------------------------
# Studies

@pytest.fixture(scope="module")
def tiny_pm():
    return PoseModel(tiny_transpose_r(), "tiny")


def test_part_region(tiny_pm):
    ex = tiny_pm.explain(str(SKIER), bbox=BOX, flip=False)
    k = COCO_KEYPOINTS.index("l_ankle")
    mask = part_region(ex, "l_ankle")
    x, y = (int(round(v)) for v in ex.keypoints[k, :2])
    h, w = mask.shape
    if 0 <= x < w and 0 <= y < h:
        assert mask[y, x]
    leg = part_region(ex, "left-leg")
    assert leg.sum() > mask.sum() and (leg | mask).sum() == leg.sum()
    with pytest.raises(ValueError, match="did you mean left_leg"):
        part_region(ex, "lef_leg")


def test_occlusion_study_and_symmetric_study(tiny_pm, tmp_path):
    s = occlusion_study(tiny_pm, str(SKIER), "l_ankle", bbox=BOX, region=(300, 250, 120, 120), fill="mean")
    assert s.hidden == "300,250,120,120" and s.mask.sum() == 120 * 120
    assert s.peak_drop == pytest.approx(s.peak_before - s.peak_after)
    assert sum(s.masses_before.values()) == pytest.approx(1) == pytest.approx(sum(s.masses_after.values()))
    assert s.displacement_px == pytest.approx(s.displacements_px["l_ankle"])
    data = json.loads(s.to_json(tmp_path / "s.json"))
    assert data["mass_shift"]["own"] == pytest.approx(s.masses_after["own"] - s.masses_before["own"])
    assert "displacement" in s.table()
    assert s._repr_png_()[:4] == b"\x89PNG"
    r = symmetric_study(tiny_pm, str(SKIER), "l_ankle", bbox=BOX)
    assert r["mirror"] == "r_ankle" and r["study"].hidden == "l_ankle"
    assert r["mirror_shift"] == pytest.approx(r["mirror_mass_after"] - r["mirror_mass_before"])
    with pytest.raises(ValueError, match="no mirror"):
        symmetric_study(tiny_pm, str(SKIER), "nose", bbox=BOX)
    with pytest.raises(ValueError, match="not both"):
        occlusion_study(tiny_pm, str(SKIER), "l_ankle", region=(0, 0, 5, 5), part="head")


def test_results_write_what_they_return(tiny_pm, tmp_path):
    """to_json / to_csv return the text and, given a path, write exactly that text."""
    r = symmetric_study(tiny_pm, str(SKIER), "l_ankle", bbox=BOX, flip=False)
    s = r["study"]
    text = s.to_csv(tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_bytes() == text.encode()
    rows = text.split("\r\n")
    # the first columns are the study's; then whose numbers they are (image, person, box, model, ...)
    assert rows[0].startswith("region,mass_before,mass_after,shift,image,") and len(rows) == 1 + 6 + 1
    region, before, after, shift = rows[1].split(",")[:4]
    assert region == "own" and float(shift) == pytest.approx(float(after) - float(before), abs=2e-6)
    data = json.loads(s.to_json(tmp_path / "s.json"))
    assert (tmp_path / "s.json").read_text() == s.to_json()
    assert data["symmetric"]["mirror"] == "r_ankle" and data["symmetric"]["mirror_shift"] == r["mirror_shift"]
    sm = occlusion_sensitivity(tiny_pm, str(SKIER), bbox=BOX, window=96, stride=80, keypoints=["nose", "l_ankle"],
                               flip=False)
    text = sm.to_csv(tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_bytes() == text.encode()
    lines = text.splitlines()
    assert lines[0].startswith("keypoint,row,col,y,x,window,drop,image,") and len(lines) == 1 + 2 * 3 * 3
    kp, row, col, y, x, window, drop = lines[-1].split(",")[:7]
    assert (kp, int(row), int(col), int(y), int(x), int(window)) == ("l_ankle", 2, 2, 160, 160, 96)
    assert float(drop) == pytest.approx(sm.drops[1, 2, 2], rel=1e-5, abs=1e-9)
    assert json.loads(sm.to_json(tmp_path / "m.json"))["keypoints"] == ["nose", "l_ankle"]


# ---------------------------------------------------------------------------------------------------
# An MPII model: parts, mirror joints and regions come from its own keypoint set

@pytest.fixture(scope="module")
def mpii_pm():
    torch.manual_seed(0)
    model = TokenPose(patch_size=(16, 16), depth=2, heads=2, num_keypoints=16, image_size=(256, 256)).eval()
    # random weights: the official (unguarded) DARK step can throw a keypoint off the crop, where no token
    # disc can hold it; the guarded decoding keeps these geometric checks meaningful
    return PoseModel(model, "mpii-small", model.keypoint_names, decode="guarded")


def test_part_joints_follow_the_keypoint_set():
    assert part_joints("left_arm", COCO) == ("left_arm", (5, 7, 9))
    assert part_joints("l-arm", MPII) == ("left_arm", (13, 14, 15))
    assert part_joints("head", MPII) == ("head", (8, 9))
    assert part_joints("Head_Top", MPII) == ("head_top", (9,))
    with pytest.raises(ValueError, match="did you mean head_top"):
        part_joints("head_tp", MPII)


def test_mpii_occlusion_studies_and_sweep(mpii_pm):
    ex = mpii_pm.explain(str(SKIER), bbox=BOX, flip=False)
    masks = region_masks(ex, "l_ankle")
    assert (np.stack(list(masks.values())).sum(0) == 1).all()
    k = MPII.index("r_ankle")
    row, col = divmod(ex.layout.token_at(*ex.keypoints_crop[k]), ex.layout.grid[1])
    assert masks["symmetric"][row, col] or masks["own"][row, col]        # the mirror's disc, unless it overlaps
    s = occlusion_study(mpii_pm, str(SKIER), "head_top", bbox=BOX, part="head", flip=False)
    assert s.hidden == "head" and sum(s.masses_before.values()) == pytest.approx(1)
    assert s.mask.sum() > 0 and np.isfinite(list(s.masses_after.values())).all()
    r = symmetric_study(mpii_pm, str(SKIER), "l_wrist", bbox=BOX, flip=False)
    assert r["mirror"] == "r_wrist" and np.isfinite(r["mirror_shift"])
    with pytest.raises(ValueError, match="no mirror"):
        symmetric_study(mpii_pm, str(SKIER), "head_top", bbox=BOX)
    sm = occlusion_sensitivity(mpii_pm, str(SKIER), bbox=BOX, window=128, stride=128,
                               keypoints=["head_top", "l_wrist"], flip=False)
    assert sm.drops.shape == (2, 2, 2) and sm.index("left_wrist") == 1
    assert set(json.loads(sm.to_json())["rank_correlation_last_layer"]) == {"head_top", "l_wrist"}


# ---------------------------------------------------------------------------------------------------
# Commands

def invoke(*args):
    from tpexplain.cli import main
    return CliRunner().invoke(main, [str(a) for a in args])


MODEL = ("--model", "tp-r-a4", "--weights", "random", "--bbox", SKIER_BOX)


def test_layers_command(tmp_path):
    out = tmp_path / "lay.png"
    r = invoke("layers", SKIER, "--keypoint", "l_wrist,r_ankle", *MODEL, "--no-flip", "-o", out)
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "lay.csv").read_text().splitlines()
    assert rows[0].startswith("keypoint,layer,entropy") and len(rows) == 1 + 2 * 4
    assert len(json.loads((tmp_path / "lay.json").read_text())["metrics"]) == 8
    assert "dist body" in r.output and r.output.strip().splitlines()[-1] == str(out)


def test_occlusion_commands(tmp_path):
    out = tmp_path / "occ.png"
    r = invoke("occlusion", SKIER, "-k", "l_ankle", "--part", "left_leg", "--fill", "blur", *MODEL, "--no-flip",
               "-o", out)
    assert r.exit_code == 0, r.output
    assert out.exists() and (tmp_path / "occ.csv").exists()
    assert json.loads((tmp_path / "occ.json").read_text())["hidden"] == "left_leg"
    sweep_out = tmp_path / "sweep.png"
    r = invoke("occlusion", SKIER, "-k", "l_ankle,nose", "--sweep", "--window", "96", "--stride", "80", *MODEL,
               "--no-flip", "-o", sweep_out)
    assert r.exit_code == 0, r.output
    assert "occlusion sweep: 9 forward passes (3x3 windows of 96 px, stride 80)" in r.output   # said first
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["keypoints"] == ["l_ankle", "nose"] and len(data["drops"]["nose"]) == 3
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 1 + 2 * 3 * 3


@pytest.mark.parametrize("args, words", [
    (("layers", "-k", "l_ankel"), ["did you mean l_ankle"]),
    (("layers", "-k", "l_ankle", "--head", "8"), ["head 8 out of range"]),
    (("layers", "-k", "l_ankle", "--radius", "-3"), ["--radius"]),
    (("occlusion", "-k", "l_ankle", "--part", "lef_leg"), ["unknown body part", "left_leg"]),
    (("occlusion", "-k", "l_ankle", "--region", "1,2,3"), ["--region", "four numbers"]),
    (("occlusion", "-k", "l_ankle", "--region", "5000,0,10,10"), ["covers no pixel"]),
    (("occlusion", "-k", "nose", "--symmetric"), ["no mirror joint"]),
    (("occlusion", "-k", "l_ankle,nose"), ["one --keypoint"]),
    (("occlusion", "-k", "l_ankle", "--sweep", "--window", "300"), ["window 300"]),
    (("occlusion", "-k", "l_ankle", "--sweep", "--stride", "40"), ["stride 40"]),
    (("occlusion", "-k", "l_ankle", "--sweep", "--part", "head"), ["drop --region/--part"]),
    (("occlusion", "-k", "all", "--sweep", "--window", "1", "--stride", "1"), ["49,152 forward passes", "5,000"]),
])
def test_bad_arguments_give_one_line_errors_and_no_files(tmp_path, args, words):
    out = tmp_path / "bad.png"
    r = invoke(args[0], SKIER, *args[1:], *MODEL, "-o", out)
    assert r.exit_code in (1, 2)             # 2: click's usage errors
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    for w in words:
        assert w in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []
