"""Attention rollout on constructed attention matrices whose product is known."""
import numpy as np
import pytest
import torch

from tpexplain.analysis.rollout import rollout, rollout_matrix
from tpexplain.explanation import Explanation
from tpexplain.layout import TokenLayout
from tpexplain.record import LayerAttention


def _stochastic(n: int, seed: int, heads: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(heads, n, n, generator=g, dtype=torch.float64) * 2, dim=-1)


def _explanation(layers: list[torch.Tensor], layout: TokenLayout) -> Explanation:
    """An Explanation holding only what rollout reads: the layers' attention and the token layout."""
    atts = [LayerAttention(probs=a[None]) for a in layers]     # (1, H, N, N)
    h, w = layout.grid[0] * layout.stride[0], layout.grid[1] * layout.stride[1]
    return Explanation(np.zeros((int(h), int(w), 3), np.uint8), None, torch.zeros(3, int(h), int(w)), None,
                       np.zeros((17, 3)), np.zeros((17, 2)), atts, layout)


def test_rollout_matrix_without_residual_is_the_plain_product():
    a1, a2, a3 = (_stochastic(5, s)[0] for s in (1, 2, 3))
    assert torch.allclose(rollout_matrix([a1, a2, a3], residual=False), a3 @ a2 @ a1)


def test_rollout_matrix_with_residual_mixes_in_the_identity():
    a1, a2 = _stochastic(4, 1)[0], _stochastic(4, 2)[0]
    eye = torch.eye(4, dtype=torch.float64)
    expected = (0.5 * a2 + 0.5 * eye) @ (0.5 * a1 + 0.5 * eye)
    joint = rollout_matrix([a1, a2])
    assert torch.allclose(joint, expected)
    assert torch.allclose(joint.sum(-1), torch.ones(4, dtype=torch.float64))


def test_rollout_of_permutations_is_their_composition():
    # layer 1 sends token i to i+1, layer 2 sends it on to i+2: the product is a shift by 2
    n = 6
    shift = torch.roll(torch.eye(n, dtype=torch.float64), 1, dims=1)
    joint = rollout_matrix([shift, shift], residual=False)
    assert torch.equal(joint, torch.roll(torch.eye(n, dtype=torch.float64), 2, dims=1))


def test_rollout_map_is_the_query_row_on_the_grid():
    layout = TokenLayout(grid=(2, 3), stride=(8.0, 8.0))
    layers = [_stochastic(6, s, heads=2) for s in (4, 5)]
    ex = _explanation(layers, layout)
    point = (9.0, 12.0)                                  # column 1, row 1 → token 4
    m = rollout(ex, point=point)
    joint = rollout_matrix([a.mean(0) for a in layers])
    assert m.kind == "rollout" and m.values.shape == (2, 3)
    np.testing.assert_allclose(m.values.reshape(-1), joint[4].numpy(), rtol=1e-5)
    assert m.values.sum() == pytest.approx(1.0, abs=1e-6)


def test_rollout_with_special_tokens_keeps_them_in_the_product():
    layout = TokenLayout(grid=(2, 2), stride=(4.0, 4.0), special=("a", "b"))
    layers = [_stochastic(6, s) for s in (6, 7, 8)]
    ex = _explanation(layers, layout)
    m = rollout(ex, point=(5.0, 1.0), residual=False)     # row 0, column 1 → token 2 + 1
    joint = rollout_matrix([a[0] for a in layers], residual=False)
    np.testing.assert_allclose(m.special, joint[3, :2].numpy(), rtol=1e-5)
    np.testing.assert_allclose(m.values.reshape(-1), joint[3, 2:].numpy(), rtol=1e-5)
    assert m.values.sum() + m.special.sum() == pytest.approx(1.0, abs=1e-6)


def test_identity_attention_rolls_out_to_the_query_itself():
    layout = TokenLayout(grid=(3, 3), stride=(8.0, 8.0))
    ex = _explanation([torch.eye(9, dtype=torch.float64)[None]] * 3, layout)
    m = rollout(ex, point=(20.0, 4.0))
    expected = np.zeros((3, 3))
    expected[0, 2] = 1
    np.testing.assert_allclose(m.values, expected)


def test_start_layer_and_head_fusion():
    layout = TokenLayout(grid=(2, 2), stride=(8.0, 8.0))
    layers = [_stochastic(4, s, heads=3) for s in (1, 2, 3)]
    ex = _explanation(layers, layout)
    m = rollout(ex, point=(1.0, 1.0), start_layer=1, head_fusion="max")
    # as vit-explain: (max-fused + I) / 2, then rows renormalised
    eye = torch.eye(4, dtype=torch.float64)
    steps = [(a.max(0).values + eye) / 2 for a in layers[1:]]
    steps = [s / s.sum(-1, keepdim=True) for s in steps]
    joint = steps[1] @ steps[0]
    np.testing.assert_allclose(m.values.reshape(-1), joint[0].numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="head fusion"):
        rollout(ex, point=(1.0, 1.0), head_fusion="median")
    with pytest.raises(ValueError, match="start_layer"):
        rollout(ex, point=(1.0, 1.0), start_layer=3)


def test_rollout_on_a_model_explanation():
    import tpexplain
    torch.set_num_threads(1)
    pm = tpexplain.load("default", weights="random")
    img = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    ex = pm.explain(img, flip=False)
    m = rollout(ex, "l_wrist")
    assert m.values.shape == ex.layout.grid
    assert m.values.sum() == pytest.approx(1.0, abs=1e-4)
    assert (m.values >= 0).all()
