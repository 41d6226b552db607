"""TransPose models: official state-dict layout, checkpoint wrappings, behaviour of the official layer."""
import json
import math

import pytest
import torch
from torch import nn

from tpexplain import zoo
from tpexplain.zoo.checkpoint import CheckpointError, load_checkpoint
from tpexplain.models.transpose import TransformerEncoderLayer, sine_position_embedding

from conftest import KEYS

VARIANTS = {"tp-r-a3": "TP-R-A3", "tp-r-a4": "TP-R-A4", "tp-h-s": "TP-H-S", "tp-h-a4": "TP-H-A4", "tp-h-a6": "TP-H-A6"}


@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_matches_official_layout(name):
    reference = json.loads((KEYS / f"transpose_{VARIANTS[name]}.json").read_text())
    with torch.device("meta"):
        model = zoo.build(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(reference)  # same keys, same order
    assert ours == reference


@pytest.mark.parametrize("name", ["tp-r-a3", "tp-h-s"])
def test_checkpoint_wrappings_round_trip(name, tmp_path):
    torch.manual_seed(0)
    src = zoo.build(name).eval()
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        expected = src(x)
    sd = src.state_dict()
    wrappings = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "module": {f"module.{k}": v for k, v in sd.items()},
        "both": {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}},
    }
    for label, obj in wrappings.items():
        path = tmp_path / f"{label}.pth"
        torch.save(obj, path)
        torch.manual_seed(99)
        dst = load_checkpoint(zoo.build(name), path).eval()
        with torch.no_grad():
            assert torch.equal(dst(x), expected), label


def test_mismatched_checkpoint_names_keys_and_closest_model(tp_r_a3_weights):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(zoo.build("tp-r-a4"), tp_r_a3_weights)
    msg = str(err.value)
    assert "missing" in msg and "global_encoder.layers.3" in msg
    assert "tp-r-a3" in msg  # the model it most resembles
    assert "\n" not in msg


def test_misshaped_checkpoint_is_reported(tmp_path):
    sd = zoo.build("tp-r-a3").state_dict()
    sd["final_layer.weight"] = torch.zeros(16, 256, 1, 1)
    sd["final_layer.bias"] = torch.zeros(16)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="mis-shaped.*final_layer"):
        load_checkpoint(zoo.build("tp-r-a3"), tmp_path / "bad.pth")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_untrusted_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(zoo.build("tp-r-a3"), path)
    assert "must never run" not in capsys.readouterr().out


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(zoo.build("tp-r-a3"), path)


class OfficialStyleLayer(nn.Module):
    """The official DETR-style post-norm layer written with torch's own nn.MultiheadAttention (seq-first)."""

    def __init__(self, d, nhead, ff):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nhead, dropout=0.1)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, src, pos):
        q = k = src + pos
        src = self.norm1(src + self.self_attn(q, k, value=src)[0])
        return self.norm2(src + self.linear2(torch.relu(self.linear1(src))))


def test_encoder_layer_equals_torch_multihead_attention_layer():
    torch.manual_seed(0)
    ours = TransformerEncoderLayer(64, 8, 128).eval()
    ref = OfficialStyleLayer(64, 8, 128).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # same parameter names as the official layer
    x = torch.randn(2, 96, 64)
    pos = sine_position_embedding(12, 8, 64).transpose(0, 1)
    with torch.no_grad():
        a = ours(x, pos)
        b = ref(x.transpose(0, 1), pos.transpose(0, 1)).transpose(0, 1)
    assert torch.allclose(a, b, atol=1e-5)


def test_sine_embedding_formula():
    h, w, d = 4, 3, 8
    pe = sine_position_embedding(h, w, d)
    assert pe.shape == (h * w, 1, d)
    r, c = 2, 1   # 0-based row/col → token index r*w + c
    y = (r + 1) / (h + 1e-6) * 2 * math.pi
    x = (c + 1) / (w + 1e-6) * 2 * math.pi
    half = d // 2
    expected = []
    for part in (y, x):
        for ch in range(half):
            f = 10000 ** (2 * (ch // 2) / half)
            expected.append(math.sin(part / f) if ch % 2 == 0 else math.cos(part / f))
    assert torch.allclose(pe[r * w + c, 0], torch.tensor(expected), atol=1e-6)


def test_every_variant_predicts_17_heatmaps_at_quarter_resolution():
    for name in ("tp-r-a3", "tp-h-s"):
        model = zoo.build(name).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 256, 192)).shape == (1, 17, 64, 48)
        assert model.token_layout.num_tokens == model.pos_embedding.shape[0]
