"""Sanity checks: map similarity, cascading model randomisation, attention vs occlusion agreement."""
import numpy as np
import pytest
import torch

import tpexplain
from tpexplain.analysis.sanity import (attention_occlusion_agreement, cascading_randomisation, encoder_layers,
                                       model_randomisation, reinitialise, ssim)
from tpexplain.analysis.stats import spearman

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return tpexplain.load("default", weights="random")


@pytest.fixture(scope="module")
def person():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (160, 120, 3), dtype=np.uint8)
    img[30:140, 40:80] = (200, 60, 40)          # a block for the model to look at
    return img, (20.0, 10.0, 80.0, 140.0)


def test_spearman_and_ssim_known_values():
    a = np.arange(12, dtype=float).reshape(3, 4)
    assert spearman(a, a) == 1.0 and ssim(a, a) == 1.0
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, a ** 3 + 5) == pytest.approx(1.0)            # ranks only
    assert spearman(a, np.ones_like(a)) != spearman(a, np.ones_like(a))   # constant map: nan
    b = a.copy()
    b[0, 0], b[0, 1] = b[0, 1], b[0, 0]
    assert 0.9 < spearman(a, b) < 1.0
    assert ssim(a, 2 * a + 1) == pytest.approx(1.0)                  # scale-free by construction
    rng = np.random.default_rng(0)
    assert abs(ssim(rng.random((16, 12)), rng.random((16, 12)))) < 0.3
    with pytest.raises(ValueError):
        spearman(a, a.reshape(-1)[:5])


def test_reinitialise_is_seeded_and_leaves_the_global_rng_alone(model):
    layer = encoder_layers(model.model)[-1]
    import copy
    a, b, c = copy.deepcopy(layer), copy.deepcopy(layer), copy.deepcopy(layer)
    state = torch.random.get_rng_state()
    reinitialise(a, seed=1)
    reinitialise(b, seed=1)
    reinitialise(c, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert not torch.equal(pa, torch.cat([p.flatten() for p in layer.parameters()]))


def test_cascade_goes_top_down_on_a_copy(model):
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    steps = [(label, done) for label, done, _ in cascading_randomisation(model)]
    n = len(encoder_layers(model.model))
    assert n == 4
    assert steps[0] == ("trained", ())
    assert [d for _, d in steps[1:]] == [(3,), (2, 3), (1, 2, 3), (0, 1, 2, 3)]
    after = model.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)     # the original is never touched


def test_unchanged_model_is_exactly_similar_and_randomised_ones_are_not(model, person):
    r = model_randomisation(model, [person], keypoints=["nose", "l_wrist", "r_ankle"])
    first, last = r.steps[0], r.steps[-1]
    assert r.num_queries == 3 and len(r.steps) == 5
    for method in ("dependency", "rollout"):
        assert first.spearman[method] == [1.0, 1.0, 1.0]
        assert first.ssim[method] == [1.0, 1.0, 1.0]
    # re-initialising with other seeds is a different model: its last-layer maps change
    assert r.steps[1].mean("spearman") < 0.9
    assert last.mean("spearman") < 0.9
    summary = r.summary()
    assert summary[0]["step"] == "trained" and summary[-1]["randomised_layers"] == [1, 2, 3, 4]
    import matplotlib.pyplot as plt
    plt.close(r.figure())


def test_two_seeds_give_different_maps(model, person):
    a = model_randomisation(model, [person], keypoints=["l_knee"], seed=0, methods=("dependency",))
    b = model_randomisation(model, [person], keypoints=["l_knee"], seed=7, methods=("dependency",))
    same = model_randomisation(model, [person], keypoints=["l_knee"], seed=0, methods=("dependency",))
    assert not np.array_equal(a.steps[-1].example["dependency"], b.steps[-1].example["dependency"])
    np.testing.assert_array_equal(a.steps[-1].example["dependency"], same.steps[-1].example["dependency"])


def test_randomisation_refuses_bad_input(model, person):
    with pytest.raises(ValueError, match="at least one image"):
        model_randomisation(model, [])
    with pytest.raises(ValueError, match="unknown map method"):
        model_randomisation(model, [person], keypoints=["nose"], methods=("gradcam",))


def test_attention_occlusion_agreement(model, person):
    img, box = person
    rows = attention_occlusion_agreement(model, img, box, keypoints=["nose", "l_hip"], window=64, stride=64)
    assert rows and {r["keypoint"] for r in rows} <= {"nose", "l_hip"}
    for r in rows:
        for key in ("dependency", "first_layer", "rollout"):
            assert -1.0 <= r[key] <= 1.0
