"""Attention recording: equal to an independent recomputation, every mode, nothing left behind."""
import pytest
import torch
from torch import nn

from tpexplain import zoo
from tpexplain.record import attention_modules, record_attention


def _recompute(model, x):
    """softmax(QKᵀ/√d) per layer from each layer's own projection weights and its captured input."""
    inputs = []
    handles = [layer.register_forward_pre_hook(lambda m, args: inputs.append(args))
               for layer in model.global_encoder.layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    maps = []
    for layer, (tokens, pos) in zip(model.global_encoder.layers, inputs):
        attn = layer.self_attn
        d = tokens.shape[-1]
        w, b = attn.in_proj_weight, attn.in_proj_bias
        q = (tokens + pos) @ w[:d].T + b[:d]
        k = (tokens + pos) @ w[d:2 * d].T + b[d:2 * d]
        heads, dh = attn.nhead, d // attn.nhead
        q = q.view(*q.shape[:2], heads, dh).transpose(1, 2)
        k = k.view(*k.shape[:2], heads, dh).transpose(1, 2)
        maps.append(torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, dim=-1))
    return maps


@pytest.fixture(scope="module")
def tp_r():
    torch.manual_seed(0)
    return zoo.build("tp-r-a3").eval()


def test_recorded_attention_equals_recomputation(tp_r):
    x = torch.randn(2, 3, 256, 192)
    with torch.no_grad(), record_attention(tp_r, "full") as maps:
        tp_r(x)
    expected = _recompute(tp_r, x)
    assert len(maps) == 3
    for got, want in zip(maps, expected):
        assert got.shape == (2, 8, 768)
        assert torch.allclose(got.full(), want, atol=1e-5)
        assert torch.allclose(got.full().sum(-1), torch.ones(2, 8, 768), atol=1e-5)


def test_tp_h_single_head_recording(tmp_path):
    torch.manual_seed(0)
    model = zoo.build("tp-h-s").eval()
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad(), record_attention(model, "qk") as maps:
        model(x)
    expected = _recompute(model, x)
    assert [m.shape for m in maps] == [(1, 1, 3072)] * 4
    rows = torch.tensor([0, 100, 3071])
    for got, want in zip(maps, expected):
        assert torch.allclose(got.rows(rows), want[:, :, rows], atol=1e-5)
        assert torch.allclose(got.columns([7]), want[..., [7]], atol=1e-5)


def test_modes_agree_and_do_not_change_the_output(tp_r):
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        plain = tp_r(x)
        outs, recs = {}, {}
        for mode in ("full", "mean", "qk"):
            with record_attention(tp_r, mode) as maps:
                outs[mode] = tp_r(x)
            recs[mode] = maps
    for mode in outs:
        assert torch.allclose(outs[mode], plain, atol=1e-5), mode
    for full, mean, qk in zip(recs["full"], recs["mean"], recs["qk"]):
        assert torch.allclose(full.full(), qk.full(), atol=1e-5)
        assert torch.allclose(full.full().mean(1, keepdim=True), mean.full(), atol=1e-6)
        assert torch.allclose(full.head_mean().full(), mean.full(), atol=1e-6)
        assert torch.allclose(full.columns([3, 5]), qk.columns([3, 5]), atol=1e-5)
        assert qk.nbytes() < full.nbytes() / 4     # q/k are O(N·d), maps O(N²)


def test_compact_half_precision(tp_r):
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad(), record_attention(tp_r, "mean", dtype=torch.float16) as maps:
        tp_r(x)
    assert maps[0].probs.dtype == torch.float16
    assert torch.allclose(maps[0].rows([10]).sum(-1), torch.ones(1, 1, 1), atol=1e-2)


def test_nothing_left_behind_even_after_an_error(tp_r):
    modules = attention_modules(tp_r)
    with pytest.raises(RuntimeError):
        with record_attention(tp_r):
            raise RuntimeError("boom")
    for m in modules:
        assert "attention_sink" not in m.__dict__
        assert not m._forward_hooks and not m._forward_pre_hooks
    with torch.no_grad(), record_attention(tp_r) as maps:
        pass
    tp_r(torch.randn(1, 3, 256, 192))
    assert maps == []  # a forward after the block records nothing


def test_full_mode_probabilities_carry_gradients(tp_r):
    x = torch.randn(1, 3, 256, 192)
    with record_attention(tp_r, "full") as maps:
        out = tp_r(x)
    grads = torch.autograd.grad(out[0, 15].max(), [m.probs for m in maps], allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_foreign_multihead_attention_models_are_recorded():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()

    class Foreign(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    model = Foreign().eval()
    x = torch.randn(2, 10, 32)
    with torch.no_grad(), record_attention(model) as maps:
        out = model(x)
    with torch.no_grad():
        ref_out, ref_w = mha(x, x, x, need_weights=True, average_attn_weights=False)
    assert torch.allclose(out, ref_out, atol=1e-6)
    assert torch.allclose(maps[0].full(), ref_w, atol=1e-6)
    assert not mha._forward_hooks and not mha._forward_pre_hooks


def test_model_without_attention_is_a_clear_error():
    with pytest.raises(ValueError, match="no attention module"):
        with record_attention(nn.Conv2d(3, 3, 1)):
            pass
