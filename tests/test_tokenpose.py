"""TokenPose: official key layouts, checkpoints round trip, the official quirks, recorded attention, the CLI."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import tpexplain as tpx
from conftest import KEYS, SKIER, SKIER_BOX
from tpexplain import zoo
from tpexplain.cli import main
from tpexplain.keypoints import COCO_KEYPOINTS
from tpexplain.keypoints import MPII_KEYPOINTS
from tpexplain.models.tokenpose import TokenPose
from tpexplain.record import record_attention

ZOO_REFERENCES = {
    "tokenpose-t": "tokenpose_T", "tokenpose-s-v1": "tokenpose_S_v1", "tokenpose-s-v2": "tokenpose_S_v2",
    "tokenpose-b": "tokenpose_B", "tokenpose-l-d24": "tokenpose_L_D24", "tokenpose-l-d6": "tokenpose_L_D6_mpii",
}


def _shapes(model):
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _check_reference(model, reference):
    ref = json.loads((KEYS / f"{reference}.json").read_text())
    assert _shapes(model) == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == ref["params_trainable"]
    return ref


@pytest.mark.parametrize("name", list(ZOO_REFERENCES))
def test_zoo_model_has_the_official_keys_and_shapes(name):
    with torch.device("meta"):
        model = zoo.build(name)
    ref = _check_reference(model, ZOO_REFERENCES[name])
    assert list(model.image_size) == ref["input_shape"][2:]


def test_l_d24_384x288_has_the_official_keys_and_shapes():
    with torch.device("meta"):
        model = TokenPose(stem="hrnet", width=48, patch_size=(6, 4), depth=24, heads=12, stages=3,
                          image_size=(384, 288))
    _check_reference(model, "tokenpose_L_D24_384x288")
    assert model.token_layout.grid == (16, 18) and model.token_layout.stride == (24, 16)


def test_every_reference_file_is_covered():
    covered = set(ZOO_REFERENCES.values()) | {"tokenpose_L_D24_384x288"}
    assert {p.stem for p in KEYS.glob("tokenpose_*.json")} == covered


def test_layouts_and_the_attention_scale_quirk():
    with torch.device("meta"):
        t, s1, s2, b, l6 = (zoo.build(n) for n in ("tokenpose-t", "tokenpose-s-v1", "tokenpose-s-v2", "tokenpose-b",
                                                     "tokenpose-l-d6"))
    assert t.token_layout == tpx.TokenLayout((16, 16), (16, 12), COCO_KEYPOINTS)
    assert s1.token_layout.grid == (16, 16) and s1.token_layout.stride == (16, 12)
    assert s2.token_layout.grid == (32, 24) and s2.token_layout.stride == (8, 8)
    assert l6.token_layout.special == MPII_KEYPOINTS and l6.token_layout.stride == (16, 16)
    scales = lambda m: {a.scale for a in m.modules() if hasattr(a, "to_qkv")}  # noqa: E731
    assert scales(t) == {12 ** -0.5}
    assert scales(s1) == scales(s2) == {192 ** -0.5}     # TokenPose-S never passes scale_with_head
    assert scales(b) == {24 ** -0.5}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return zoo.build("tokenpose-t").eval()


@pytest.fixture(scope="module")
def image_batch():
    torch.manual_seed(1)
    return torch.randn(2, 3, 256, 192)


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "module"])
def test_checkpoint_round_trip_gives_identical_heatmaps(wrap, tiny, image_batch, tmp_path):
    state = tiny.state_dict()
    if wrap == "state_dict":
        state = {"state_dict": state, "meta": {"epoch": 300}}
    elif wrap == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "tokenpose_t.pth"
    torch.save(state, path)
    loaded = tpx.load("tokenpose-t", weights=path).model
    with torch.no_grad():
        assert torch.equal(loaded(image_batch), tiny(image_batch))


def test_sine_position_is_re_added_before_every_layer_but_the_first(tiny, image_batch):
    core = tiny.transformer
    seen = []   # (input of the layer's attention residual, output of its feed-forward residual)
    hooks = []
    for attn, ff in core.transformer.layers:
        hooks.append(attn.register_forward_pre_hook(lambda m, args: seen.append(["in", args[0]])))
        hooks.append(ff.register_forward_hook(lambda m, args, out: seen.append(["out", out])))
    try:
        with torch.no_grad():
            heatmaps = tiny(image_batch)
    finally:
        for h in hooks:
            h.remove()
    assert heatmaps.shape == (2, 17, 64, 48)
    ins, outs = [t for kind, t in seen if kind == "in"], [t for kind, t in seen if kind == "out"]
    first = ins[0]
    # keypoint tokens come first and carry no position; the visual tokens carry it once
    assert torch.equal(first[:, :17], core.keypoint_token.expand(2, -1, -1))
    pos = core.pos_embedding
    for i in range(1, len(ins)):
        assert torch.equal(ins[i][:, :17], outs[i - 1][:, :17])
        assert torch.allclose(ins[i][:, 17:], outs[i - 1][:, 17:] + pos, atol=1e-6)


def _recompute(model, x, heads, scale):
    """softmax(q kᵀ · scale) per layer from each layer's own to_qkv weight and its captured (normed) input."""
    inputs = []
    mods = [m for m in model.modules() if hasattr(m, "to_qkv")]
    hooks = [m.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for m in mods]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    maps = []
    for m, tokens in zip(mods, inputs):
        b, n, c = tokens.shape
        q, k, _ = (tokens @ m.to_qkv.weight.T).split(c, dim=-1)
        q = q.reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)
        k = k.reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)
        maps.append(torch.softmax(torch.einsum("bhid,bhjd->bhij", q, k) * scale, dim=-1))
    return maps


@pytest.mark.parametrize("name, heads, scale, modes", [("tokenpose-t", 16, 12 ** -0.5, ("full", "qk")),
                                                       ("tokenpose-s-v1", 8, 192 ** -0.5, ("full",))])
def test_recorded_attention_equals_recomputation(name, heads, scale, modes, image_batch):
    torch.manual_seed(2)
    model = zoo.build(name).eval()
    x = image_batch[:1]
    expected = _recompute(model, x, heads, scale)
    for mode in modes:
        with torch.no_grad(), record_attention(model, mode) as maps:
            model(x)
        assert len(maps) == 12
        for got, want in zip(maps, expected):
            full = got.full()
            assert full.shape == (1, heads, 273, 273)
            assert torch.allclose(full, want, atol=1e-5)
            assert torch.allclose(full.sum(-1), torch.ones(1, heads, 273), atol=1e-5)


def test_explanation_uses_the_keypoint_tokens(tiny, tmp_path):
    pm = tpx.PoseModel(tiny, "tokenpose-t")
    ex = pm.explain(str(SKIER), bbox=tuple(float(v) for v in SKIER_BOX.split(",")), mode="full")
    row = ex.attention[-1].rows([15])[0, :, 0].mean(0).numpy()        # l_ankle's token, heads averaged
    dep = ex.dependency("l_ankle")
    assert dep.values.shape == (16, 16)
    assert np.allclose(dep.values, row[17:].reshape(16, 16), atol=1e-7)
    assert np.allclose(dep.special, row[:17], atol=1e-7)
    kk = ex.keypoint_attention(layer=-1)
    assert kk.values.shape == (17, 17) and kk.names == COCO_KEYPOINTS
    assert np.allclose(kk.values[15], row[:17], atol=1e-7)
    assert np.allclose(kk.values.sum(1) + kk.visual_share, 1.0, atol=1e-5)
    assert kk._repr_png_()[:4] == b"\x89PNG"
    one_head = ex.keypoint_attention(layer=0, head=3)
    assert one_head.layer == 0 and one_head.head == 3
    with pytest.raises(ValueError, match="head"):
        ex.keypoint_attention(head=16)


def test_mpii_model_names_and_flip_pairs():
    with torch.device("meta"):
        l6 = zoo.build("tokenpose-l-d6")
    assert l6.keypoint_names == MPII_KEYPOINTS and l6.image_size == (256, 256)
    # a small 16-keypoint model through both flip-test paths: COCO's pairs would index channel 16 of 16
    torch.manual_seed(0)
    small = TokenPose(patch_size=(16, 16), depth=1, heads=2, num_keypoints=16, image_size=(256, 256)).eval()
    pm = tpx.PoseModel(small, "mpii-small", small.keypoint_names)
    image = np.zeros((300, 200, 3), np.uint8)
    assert pm.predict(image, flip=True).heatmaps.shape == (1, 16, 64, 64)
    assert pm.explain(image, flip=True).dependency("l_ankle").values.shape == (16, 16)


@pytest.fixture(scope="module")
def tiny_weights(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenpose") / "tokenpose_t.pth"
    torch.save(tiny.state_dict(), path)
    return path


def test_attention_command_writes_a_png(tiny_weights, tmp_path):
    out = tmp_path / "fig.png"
    r = CliRunner().invoke(main, ["attention", str(SKIER), "--keypoint", "l_ankle", "--bbox", SKIER_BOX,
                                  "--model", "tokenpose-t", "--weights", str(tiny_weights), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("layer", ["last", "all"])
def test_kp_attention_command_writes_a_png(layer, tiny_weights, tmp_path):
    out = tmp_path / f"kp_{layer}.png"
    r = CliRunner().invoke(main, ["kp-attention", str(SKIER), "--bbox", SKIER_BOX, "--layer", layer, "--no-flip",
                                  "--model", "tokenpose-t", "--weights", str(tiny_weights), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("model", ["vitpose-s", "tp-r-a3"])
def test_kp_attention_needs_keypoint_tokens(model, tmp_path):
    out = tmp_path / "kp.png"
    r = CliRunner().invoke(main, ["kp-attention", str(SKIER), "--model", model, "-o", str(out)])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "no keypoint tokens" in lines[0], r.output
    assert not out.exists()


def test_kp_attention_runs_as_python_m(tiny_weights, tmp_path):
    """`python -m tpexplain` is the `tpexplain` command."""
    import subprocess
    import sys
    out = tmp_path / "kp.png"
    r = subprocess.run([sys.executable, "-m", "tpexplain", "kp-attention", str(SKIER), "--no-flip",
                        "--model", "tokenpose-t", "--weights", str(tiny_weights), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
