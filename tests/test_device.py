"""The input follows the model: `explain` and `predict` run on whatever device the model is on."""
import numpy as np
import pytest
import torch
from conftest import SKIER, SKIER_BOX

import tpexplain as tpx

BOX = tuple(float(v) for v in SKIER_BOX.split(","))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + \
    (["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])


@pytest.fixture(scope="module")
def reference():
    return tpx.load("default").explain(SKIER, bbox=BOX)


@pytest.mark.parametrize("device", DEVICES)
def test_explain_runs_on_the_models_device(device, reference):
    pm = tpx.load("default", device=device)
    seen = []
    hook = pm.model.register_forward_pre_hook(lambda m, args: seen.append(args[0].device))
    try:
        ex = pm.explain(SKIER, bbox=BOX)
        poses = pm.predict(SKIER, [BOX])
    finally:
        hook.remove()
    assert seen and all(d.type == torch.device(device).type for d in seen)
    # what an Explanation holds is on the CPU, whatever the model's device, so figures and numpy just work
    assert ex.heatmaps.device.type == "cpu" and ex.input.device.type == "cpu"
    assert all((a.probs if a.probs is not None else a.q).device.type == "cpu" for a in ex.attention)
    np.testing.assert_allclose(ex.keypoints[:, :2], reference.keypoints[:, :2], atol=1e-2)
    np.testing.assert_allclose(poses.keypoints[0, :, :2], reference.keypoints[:, :2], atol=1e-2)
    assert ex.dependency("l_ankle").values.shape == reference.dependency("l_ankle").values.shape


def test_explain_is_predict_inside_the_recorder():
    """One pipeline: the explanation's keypoints are predict's (recording computes attention explicitly
    instead of the fused kernel, so they agree to float rounding, not bit for bit)."""
    pm = tpx.load("default")
    ex = pm.explain(SKIER, bbox=BOX)
    poses = pm.predict(SKIER, [BOX])
    np.testing.assert_allclose(ex.keypoints, poses.keypoints[0], rtol=0, atol=1e-3)
    torch.testing.assert_close(ex.heatmaps, poses.heatmaps[0], rtol=0, atol=1e-5)
    # the recorded maps are the un-flipped image's: batch of one, rows summing to one
    layer = ex.attention[-1]
    assert layer.shape[0] == 1
    torch.testing.assert_close(layer.rows([0, 5]).sum(-1), torch.ones(1, layer.shape[1], 2))
