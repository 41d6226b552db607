"""The top-down pipeline's geometry and decoding, checked against constructed answers."""
import numpy as np
import torch
from torch import nn

from tpexplain.decode import argmax_coords, decode, flip_back
from tpexplain.inference import predict
from tpexplain.keypoints import FLIP_PAIRS, keypoint_index
from tpexplain.layout import TokenLayout
from tpexplain.transforms import (Crop, apply_affine, box_to_center_scale, crop_image, gaussian_targets)

import pytest


def test_box_to_center_scale_pads_to_aspect_and_by_125():
    center, scale = box_to_center_scale((10, 20, 100, 100))
    assert np.allclose(center, [59.5, 69.5])
    # width 100 < 0.75 * height? no: 100 > 75, so the height grows to 100 / 0.75
    assert np.allclose(scale, np.array([100, 100 / 0.75]) / 200 * 1.25)


def test_crop_maps_points_consistently():
    crop = Crop(*box_to_center_scale((50, 40, 120, 200)), 15.0, (256, 192), (64, 48))
    pts = np.array([[60.0, 50.0], [150.0, 220.0]])
    back = apply_affine(apply_affine(pts, crop.to_crop), crop.from_crop)
    assert np.allclose(back, pts, atol=1e-4)
    image = np.zeros((300, 300, 3), np.uint8)
    image[118:123, 108:113] = 255                      # a bright square centred at (110, 120)
    patch = crop_image(image, crop)
    ys, xs = np.nonzero(patch[..., 0] > 100)
    expected = apply_affine(np.array([110.0, 120.0]), crop.to_crop)
    assert abs(xs.mean() - expected[0]) < 1.0 and abs(ys.mean() - expected[1]) < 1.0


def test_dark_recovers_subpixel_peak():
    target, _ = gaussian_targets(np.array([[20.3, 30.7, 2]]), (64, 48))
    coords, scores = decode(target[None])
    assert np.allclose(coords[0, 0], [20.3, 30.7], atol=0.05)
    assert scores[0, 0] > 0.9
    plain, _ = argmax_coords(target[None])
    assert np.allclose(plain[0, 0], [20, 31])


def test_dark_on_a_plateau_stays_near_the_argmax():
    hm = np.zeros((1, 1, 64, 48), np.float32)
    hm[0, 0, 20:40, 10:30] = 1.0                         # a plateau: no curvature to refine with
    hm[0, 0, 30, 20] = 1.001
    # the official decoding takes any Newton step (tests/test_fidelity.py has one longer than a pixel);
    # here the plateau is symmetric about the argmax, so both decodings stay on it
    for method in ("official", "guarded"):
        coords, _ = decode(hm, method=method)
        assert np.allclose(coords[0, 0], [20, 30], atol=1.0)


def test_nonpositive_heatmap_gives_zero_coords():
    coords, scores = argmax_coords(-np.ones((1, 1, 8, 6), np.float32))
    assert (coords == 0).all() and scores[0, 0] == -1


def test_flip_back_swaps_left_and_right():
    h = torch.zeros(1, 17, 4, 6)
    h[0, 15, 1, 0] = 1.0          # l_ankle at the left border of the flipped input
    out = flip_back(h)
    assert out[0, 16, 1, 5] == 1.0 and out[0, 15].sum() == 0
    assert len(FLIP_PAIRS) == 8


class PerfectModel(nn.Module):
    """Puts keypoint k's Gaussian where a known image point lands in heatmap space."""

    def __init__(self, points_hm):
        super().__init__()
        self.image_size = (256, 192)
        self.points_hm = points_hm
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        joints = np.concatenate([self.points_hm, np.full((len(self.points_hm), 1), 2.0)], 1)
        target, _ = gaussian_targets(joints, (64, 48))
        out = torch.from_numpy(target)[None].repeat(x.shape[0], 1, 1, 1)
        return out


def test_predict_maps_heatmap_peaks_back_to_image_points():
    box = (40.0, 30.0, 90.0, 160.0)
    points = np.random.default_rng(0).uniform([50, 40], [120, 180], size=(17, 2))
    crop = Crop(*box_to_center_scale(box), 0.0, (256, 192), (64, 48))
    model = PerfectModel(apply_affine(points, crop.to_heatmap))
    poses = predict(model, np.zeros((240, 200, 3), np.uint8), [box], flip=False)
    assert np.allclose(poses.keypoints[0, :, :2], points, atol=0.25)
    assert np.allclose(poses.keypoints_crop[0], apply_affine(points, crop.to_crop), atol=1.0)


def test_keypoint_names_and_suggestions():
    assert keypoint_index("l_ankle") == keypoint_index("left_ankle") == keypoint_index("LEFT_ANKLE") == 15
    assert keypoint_index("Right Wrist") == 10
    with pytest.raises(ValueError, match="did you mean l_ankle"):
        keypoint_index("l_ankel")


def test_token_layout():
    lay = TokenLayout(grid=(32, 24), stride=(8, 8))
    assert lay.token_at(0, 0) == 0 and lay.token_at(191.9, 255.9) == 767
    assert lay.token_at(-5, 300) == 31 * 24          # clamped
    assert lay.token_center(25) == (12.0, 12.0)
    padded = TokenLayout(grid=(16, 12), stride=(16, 16), origin=(-2, -2))   # ViTPose's padded patches
    assert padded.token_at(13.9, 0) == 0 and padded.token_at(14.0, 0) == 1
    assert padded.token_center(1) == (22.0, 6.0)
    special = TokenLayout(grid=(2, 2), stride=(4, 4), special=("a", "b"))
    assert special.token_at(5, 5) == 2 + 3 and special.num_tokens == 6
