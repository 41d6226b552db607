"""ViTPose: official key layouts, released and Hugging Face checkpoints, safetensors, recorded attention, the CLI."""
import json
import pickle

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import tpexplain as tpx
from conftest import KEYS, SKIER, SKIER_BOX
from test_fidelity import ref_post_dark_udp
from tpexplain import zoo
from tpexplain.zoo.checkpoint import CheckpointError, read_state_dict
from tpexplain.cli import main
from tpexplain.record import record_attention
from tpexplain.zoo.safetensors import load_file, save_file

SIZES = {"s": "S", "b": "B", "l": "L", "h": "H"}
ZOO_REFERENCES = {f"vitpose-{s}{suffix}": f"vitpose_{S}_{dec}"
                  for s, S in SIZES.items() for suffix, dec in (("", "classic"), ("-simple", "simple"))}


@pytest.mark.parametrize("name", list(ZOO_REFERENCES))
def test_zoo_model_has_the_official_keys_and_shapes(name):
    ref = json.loads((KEYS / f"{ZOO_REFERENCES[name]}.json").read_text())
    with torch.device("meta"):
        model = zoo.build(name)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    # 16x12 patches of 16 px; the patch convolution pads by 2, so the first patch starts at pixel -2
    assert model.token_layout == tpx.TokenLayout((16, 12), (16, 16), origin=(-2, -2))


def test_every_reference_file_is_covered():
    assert {p.stem for p in KEYS.glob("vitpose_*.json")} == set(ZOO_REFERENCES.values())


# ---------------------------------------------------------------------------------------------------
# Hugging Face layout, written independently of tpexplain's own mapping

def to_hf(state: dict) -> dict:
    """Our (official mmpose) names → `VitPoseForPoseEstimation`'s, splitting qkv into query/key/value."""
    head = {"deconv_layers.0": "deconv1", "deconv_layers.1": "batchnorm1", "deconv_layers.3": "deconv2",
            "deconv_layers.4": "batchnorm2", "final_layer": "conv"}
    block = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    out = {}
    for k, v in state.items():
        if k == "backbone.pos_embed":
            out["backbone.embeddings.position_embeddings"] = v
        elif k.startswith("backbone.patch_embed.proj."):
            out["backbone.embeddings.patch_embeddings.projection." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("backbone.last_norm."):
            out["backbone.layernorm." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("backbone.blocks."):
            _, _, i, rest = k.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            if module == "attn.qkv":
                for part, t in zip(("query", "key", "value"), v.chunk(3)):
                    out[f"backbone.encoder.layer.{i}.attention.attention.{part}.{kind}"] = t.clone()
            else:
                out[f"backbone.encoder.layer.{i}.{block[module]}.{kind}"] = v
        else:
            module, kind = k[len("keypoint_head."):].rsplit(".", 1)
            out[f"head.{head[module]}.{kind}"] = v
    return out


@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_hf_layout_of_vitpose_b_matches_the_reference(decoder):
    ref = json.loads((KEYS / f"hf_vitpose_B_{decoder}.json").read_text())
    with torch.device("meta"):
        model = zoo.build("vitpose-b" if decoder == "classic" else "vitpose-b-simple")
        hf = to_hf(model.state_dict())
        assert {k: list(v.shape) for k, v in hf.items()} == ref
        # and tpexplain's mapping takes the reference layout back to ours, key for key
        ours = model.adapt_state_dict({k: torch.empty(v) for k, v in ref.items()})
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def hf_config(decoder="classic", hidden_size=384, depth=12, heads=12, **backbone):
    """A config.json as the Hub's ViTPose repos have it (converted by convert_vitpose_to_hf.py)."""
    config = {"model_type": "vitpose", "architectures": ["VitPoseForPoseEstimation"], "backbone": None,
              "use_simple_decoder": decoder == "simple", "scale_factor": 4,
              "id2label": {str(i): name for i, name in enumerate(tpx.COCO_KEYPOINTS)},
              "backbone_config": {"model_type": "vitpose_backbone", "hidden_size": hidden_size,
                                  "num_hidden_layers": depth, "num_attention_heads": heads, "image_size": [256, 192],
                                  "patch_size": [16, 16], "num_channels": 3, "layer_norm_eps": 1e-6,
                                  "qkv_bias": True, "mlp_ratio": 4, "hidden_act": "gelu", "num_experts": 1,
                                  "out_features": [f"stage{depth}"], "out_indices": [depth]}}
    config["backbone_config"].update(backbone)
    return config


def write_hf_folder(folder, model, decoder, **changes):
    folder.mkdir()
    config = hf_config(decoder)
    config["backbone_config"].update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(to_hf(model.state_dict()), folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return {d: zoo.build("vitpose-s" if d == "classic" else "vitpose-s-simple").eval() for d in ("classic", "simple")}


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.randn(1, 3, 256, 192)


@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_hf_folder_loads_and_gives_identical_heatmaps(decoder, small, x, tmp_path, monkeypatch):
    model = small[decoder]
    folder = write_hf_folder(tmp_path / "vitpose-s-hf", model, decoder)
    # safetensors must be read without pickle
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle used"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load used"))
    loaded = tpx.load("vitpose-s" if decoder == "classic" else "vitpose-s-simple", weights=folder).model
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_sharded_hf_folder_loads(small, x, tmp_path):
    model, folder = small["simple"], tmp_path / "sharded"
    folder.mkdir()
    hf = to_hf(model.state_dict())
    names = list(hf)
    shards = {"model-00001-of-00002.safetensors": names[:40], "model-00002-of-00002.safetensors": names[40:]}
    for file, keys in shards.items():
        save_file({k: hf[k] for k in keys}, folder / file)
    index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = tpx.load("vitpose-s-simple", weights=folder).model
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_hf_checkpoint_into_the_wrong_decoder_names_the_field(small, tmp_path):
    folder = write_hf_folder(tmp_path / "hf", small["simple"], "simple")
    with pytest.raises(CheckpointError, match="use_simple_decoder is true but 'vitpose-s' has false"):
        tpx.load("vitpose-s", weights=folder)
    (folder / "config.json").unlink()     # without a config, the keys say it
    with pytest.raises(CheckpointError, match="missing .*keypoint_head.deconv_layers"):
        tpx.load("vitpose-s", weights=folder)


# A folder's config.json must describe the zoo model it is loaded as (the zoo name decides the architecture);
# its LayerNorm eps is adopted, since the Hub's configs say 1e-12 where the official code has 1e-6

@pytest.mark.parametrize("field, value, words", [
    ("num_attention_heads", 6, "backbone_config.num_attention_heads is 6 but 'vitpose-s' has 12"),
    ("out_indices", [4], "backbone_config.out_indices is [4]: the head would read layer 4 of 12"),
    ("hidden_size", 768, "backbone_config.hidden_size is 768"),
    ("num_hidden_layers", 24, "backbone_config.num_hidden_layers is 24"),
    ("image_size", [384, 288], "backbone_config.image_size is [384, 288]"),
    ("patch_size", [14, 14], "backbone_config.patch_size is [14, 14]"),
    ("num_experts", 6, "backbone_config.num_experts is 6"),
    ("hidden_act", "relu", "backbone_config.hidden_act"),
    ("mlp_ratio", 2, "backbone_config.mlp_ratio is 2"),
])
def test_hf_config_that_describes_another_model_is_refused_naming_the_field(field, value, words, small, tmp_path):
    changes = {field: value}
    if field in ("out_indices", "num_hidden_layers"):
        changes["out_features"] = None
        changes.setdefault("out_indices", None)
    folder = write_hf_folder(tmp_path / "hf", small["classic"], "classic", **changes)
    with pytest.raises(CheckpointError) as info:
        tpx.load("vitpose-s", weights=folder)
    message = str(info.value)
    assert "\n" not in message and "config.json" in message and words in message, message


@pytest.mark.parametrize("config", [{"model_type": "vitpose", "use_simple_decoder": False}, {"id2label": {"0": "a"}},
                                    {"model_type": "bert"}, {"backbone": "vit_base_patch16_224"}])
def test_hf_config_defaults_are_the_hub_librarys(config, small, tmp_path):
    # no backbone_config: VitPoseConfig builds a ViT-B read at layer 4; no id2label: 2 labels
    folder = write_hf_folder(tmp_path / "hf", small["classic"], "classic")
    full = hf_config()
    full.update(config)
    if "use_simple_decoder" in config:
        full = config
    (folder / "config.json").write_text(json.dumps(full))
    with pytest.raises(CheckpointError, match="config.json: "):
        tpx.load("vitpose-s", weights=folder)


def test_hf_config_with_the_hubs_eps_builds_that_eps(small, x, tmp_path):
    model = small["classic"]
    folder = write_hf_folder(tmp_path / "hf", model, "classic", layer_norm_eps=1e-12)
    loaded = tpx.load("vitpose-s", weights=folder).model
    assert {m.eps for m in loaded.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-12}
    want = zoo.ARCHITECTURES["vitpose"](embed_dim=384, depth=12, num_heads=12, layer_norm_eps=1e-12).eval()
    want.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded(x), want(x))
        assert not torch.equal(loaded(x), model(x))     # the eps is not a no-op on these weights


def test_model_built_from_a_hf_config(small, x):
    from tpexplain.models.vitpose import vitpose_from_hf_config
    built = vitpose_from_hf_config(hf_config("simple", layer_norm_eps=1e-12)).eval()
    assert built.architecture == small["simple"].architecture and built.layer_norm_eps == 1e-12
    with pytest.raises(ValueError, match="out_indices is \\[4\\]"):
        vitpose_from_hf_config({"model_type": "vitpose"})


def test_safetensors_round_trip_of_every_dtype(tmp_path):
    torch.manual_seed(0)
    tensors = {"f32": torch.randn(3, 4), "f16": torch.randn(5).half(), "bf16": torch.randn(2, 3).bfloat16(),
               "i64": torch.tensor(7), "empty": torch.zeros(0, 3), "u8": torch.arange(5, dtype=torch.uint8)}
    path = save_file(tensors, tmp_path / "t.safetensors")
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert (8 + n) % 8 == 0 and json.loads(raw[8:8 + n])["bf16"]["dtype"] == "BF16"
    back = load_file(path)
    assert list(back) == list(tensors)
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k], t)


@pytest.mark.parametrize("damage", ["short", "header", "offsets", "dtype"])
def test_damaged_safetensors_is_a_clear_error(damage, tmp_path):
    path = save_file({"w": torch.ones(4)}, tmp_path / "model.safetensors")
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    if damage == "short":
        raw = raw[:5]
    elif damage == "header":
        raw[:8] = (10**9).to_bytes(8, "little")
    else:
        if damage == "offsets":
            header["w"]["data_offsets"] = [0, 64]
        else:
            header["w"]["dtype"] = "F8_E4M3"
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        raw = bytearray(len(text).to_bytes(8, "little")) + text + raw[8 + n:]
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(path)


def test_folder_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="without model.safetensors"):
        read_state_dict(tmp_path)


# ---------------------------------------------------------------------------------------------------
# Released (mmpose 0.x) checkpoints

@pytest.mark.parametrize("wrap", ["plain", "mmcv", "module"])
def test_checkpoint_round_trip_gives_identical_heatmaps(wrap, small, x, tmp_path):
    model = small["classic"]
    state = model.state_dict()
    if wrap == "mmcv":    # as released: {'state_dict', 'meta'} with an unused cls token
        state = {"state_dict": {**state, "backbone.cls_token": torch.zeros(1, 1, 384)},
                 "meta": {"mmpose_version": "0.24.0", "epoch": 210}}
    elif wrap == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "vitpose-s.pth"
    torch.save(state, path)
    loaded = tpx.load("vitpose-s", weights=path).model
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_mismatched_checkpoint_still_fails_strictly(small, tmp_path):
    state = dict(small["classic"].state_dict())
    state.pop("backbone.last_norm.bias")
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="1 missing .*backbone.last_norm.bias"):
        tpx.load("vitpose-s", weights=path)


# ---------------------------------------------------------------------------------------------------
# Attention

def test_recorded_attention_equals_recomputation(small, x):
    model = small["simple"]
    inputs = []
    hooks = [b.attn.register_forward_pre_hook(lambda m, args: inputs.append(args[0])) for b in model.backbone.blocks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    for mode in ("full", "qk"):
        with torch.no_grad(), record_attention(model, mode) as maps:
            model(x)
        assert len(maps) == 12
        for got, block, tokens in zip(maps, model.backbone.blocks, inputs):
            qkv = F.linear(tokens, block.attn.qkv.weight, block.attn.qkv.bias).reshape(1, 192, 3, 12, 32)
            q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
            want = torch.softmax((q * 32 ** -0.5) @ k.transpose(-2, -1), dim=-1)
            assert torch.allclose(got.full(), want, atol=1e-5)
            assert torch.allclose(got.full().sum(-1), torch.ones(1, 12, 192), atol=1e-5)


def test_dependency_is_the_patch_row_at_the_predicted_keypoint(small):
    pm = tpx.PoseModel(small["classic"], "vitpose-s")
    ex = pm.explain(str(SKIER), bbox=tuple(float(v) for v in SKIER_BOX.split(",")), mode="full")
    xk, yk = ex.keypoints_crop[15]
    token = min(max(int((yk + 2) // 16), 0), 15) * 12 + min(max(int((xk + 2) // 16), 0), 11)
    dep = ex.dependency("l_ankle", query="geometric")   # the token under the keypoint (default: TransPose's rule)
    assert dep.values.shape == (16, 12) and dep.special is None
    want = ex.attention[-1].rows([token])[0, :, 0].mean(0).numpy().reshape(16, 12)
    assert np.allclose(dep.values, want, atol=1e-7)
    with pytest.raises(ValueError, match="no keypoint tokens"):
        ex.keypoint_attention()


def test_attention_command_writes_a_png(small, tmp_path):
    weights = tmp_path / "vitpose-s.pth"
    torch.save(small["classic"].state_dict(), weights)
    out = tmp_path / "fig.png"
    r = CliRunner().invoke(main, ["attention", str(SKIER), "--keypoint", "l_ankle", "--bbox", SKIER_BOX,
                                  "--model", "vitpose-s", "--weights", str(weights), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------
# The crop: mmpose's UDP pipeline, re-derived here from the documented math (Huang et al., CVPR 2020;
# mmpose 0.x `_xywh2cs`, `TopDownAffine(use_udp=True)`, `transform_preds(use_udp=True)`), not from our code

def ref_xywh2cs(box, aspect, padding=1.25):
    """Test-mode box → (centre, scale): centre at x + w/2, box padded to w/h = aspect, /200, ×padding."""
    x, y, w, h = box
    center = np.array([x + w / 2, y + h / 2])
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return center, np.array([w, h]) / 200 * padding


def ref_warp_matrix(theta, size_input, size_dst, size_target):
    """UDP's image → output matrix: rotate by theta about the input's centre (size_input / 2), map the
    ROI of `size_target` px onto `size_dst` (= output size − 1) per axis, ROI centre onto size_dst / 2."""
    t = np.deg2rad(theta)
    sx, sy = size_dst[0] / size_target[0], size_dst[1] / size_target[1]
    cx, cy = size_input[0] / 2, size_input[1] / 2
    # x' = sx·(cos t·(x − cx) − sin t·(y − cy) + Tw/2), y' = sy·(sin t·(x − cx) + cos t·(y − cy) + Th/2)
    return np.array([[sx * np.cos(t), -sx * np.sin(t), sx * (-cx * np.cos(t) + cy * np.sin(t) + size_target[0] / 2)],
                     [sy * np.sin(t), sy * np.cos(t), sy * (-cx * np.sin(t) - cy * np.cos(t) + size_target[1] / 2)]])


def ref_transform_preds(coords, center, scale, output_size):
    """Heatmap points → image: x = x_hm · 200·s_w / (W_hm − 1) + c_x − 200·s_w / 2 (likewise y)."""
    size = scale * 200
    return coords * size / (np.asarray(output_size) - 1.0) + center - size / 2


def random_boxes(n, seed=0):
    rng = np.random.default_rng(seed)
    w, h = rng.uniform(8, 500, n), rng.uniform(8, 500, n)
    return [tuple(b) for b in np.stack([rng.uniform(-50, 400, n), rng.uniform(-50, 400, n), w, h], 1)]


def test_vitpose_crop_is_mmpose_udp_to_a_thousandth_of_a_pixel():
    from tpexplain.inference import make_crops
    from tpexplain.transforms import crop_image
    size, hm = (256, 192), (64, 48)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float32)
    ramp = np.dstack([xs, ys, np.zeros_like(xs)])          # each pixel holds its own coordinates
    qy, qx = np.mgrid[0:256, 0:192]
    crop_pixels = np.stack([qx.ravel(), qy.ravel()], 1).astype(float)
    heat_points = rng.uniform([-2, -2], [49, 65], (200, 2))
    for box in random_boxes(40):
        crops, x = make_crops(image, [box], size, hm, udp=True)
        crop = crops[0]
        c, s = ref_xywh2cs(box, aspect=192 / 256)
        assert np.allclose(crop.center, c, atol=1e-4) and np.allclose(crop.scale, s, rtol=1e-6)
        trans = ref_warp_matrix(0.0, c * 2, np.array([191.0, 255.0]), s * 200)
        # every crop pixel samples the image where mmpose's does
        want = apply(cv2.invertAffineTransform(trans), crop_pixels)
        assert np.abs(apply(crop.from_crop, crop_pixels) - want).max() < 1e-3
        assert np.abs(apply(crop.to_crop, want) - crop_pixels).max() < 1e-3
        # ... and the crop really is sampled there (cv2 interpolates at 1/32 px) and equals mmpose's crop
        sampled = crop_image(ramp, crop)[..., :2].reshape(-1, 2)
        inside = (want > 1).all(1) & (want < [638, 478]).all(1)
        assert np.abs(sampled[inside] - want[inside]).max() < 1 / 16
        ref_crop = cv2.warpAffine(image, trans.astype(np.float32), (192, 256), flags=cv2.INTER_LINEAR)
        diff = np.abs(crop_image(image, crop).astype(int) - ref_crop)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01     # rounding of cv2's fixed-point weights
        # keypoints back to the image as transform_preds(use_udp=True), and into the crop as the warp
        got = apply(crop.from_heatmap, heat_points)
        assert np.abs(got - ref_transform_preds(heat_points, c, s, (48, 64))).max() < 1e-3
        assert np.abs(apply(crop.to_crop, got) - heat_points * [191 / 47, 255 / 63]).max() < 1e-3


def apply(matrix, points):
    return points @ np.asarray(matrix, float)[:, :2].T + np.asarray(matrix, float)[:, 2]


def test_vitpose_predictions_use_the_udp_crop_and_other_families_keep_theirs(small):
    from tpexplain.inference import predict
    from tpexplain.transforms import to_tensor
    image = cv2.cvtColor(cv2.imread(str(SKIER)), cv2.COLOR_BGR2RGB)
    box = tuple(float(v) for v in SKIER_BOX.split(","))
    boxes = [box, (20.0, 30.0, 90.0, 400.0)]
    for model in small.values():
        poses = predict(model, image, boxes, flip=True)
        coords = ref_post_dark_udp(poses.heatmaps.float().numpy())     # mmpose's decoding, re-derived
        for i, b in enumerate(boxes):
            c, s = ref_xywh2cs(b, aspect=192 / 256)
            trans = ref_warp_matrix(0.0, c * 2, np.array([191.0, 255.0]), s * 200)
            crop = cv2.warpAffine(image, trans.astype(np.float32), (192, 256), flags=cv2.INTER_LINEAR)
            assert poses.crops[i].udp and (poses.inputs[i] - to_tensor(crop)[0]).abs().max() <= 1 / 255 / 0.224 + 1e-6
            want = ref_transform_preds(coords[i].astype(float), c, s, (48, 64))
            assert np.abs(poses.keypoints[i, :, :2] - want).max() < 1e-3
            assert np.abs(poses.keypoints_crop[i] - apply(trans, want)).max() < 1e-3
    # TransPose (and TokenPose) keep the DarkPose-derived box centre and affine
    tp = tpx.load("default", weights="random").predict(image, [box], flip=False)
    assert not tp.crops[0].udp
    assert np.allclose(tp.crops[0].center, [box[0] + (box[2] - 1) / 2, box[1] + (box[3] - 1) / 2])


def test_udp_and_affine_crops_turn_the_same_way():
    from tpexplain.transforms import Crop
    c, s = np.array([300.0, 200.0]), np.array([1.0, 4 / 3])
    for rot in (-30.0, 15.0, 90.0):
        old = Crop(c, s, rot, (256, 192), (64, 48)).to_crop[:, :2]
        new = Crop(c, s, rot, (256, 192), (64, 48), udp=True).to_crop[:, :2]
        old, new = old / np.linalg.norm(old[0]), new / np.linalg.norm(new[0])
        assert np.allclose(old, new, atol=2e-3)       # the same rotation; the scales differ by < 0.4%
        back = Crop(c, s, rot, (256, 192), (64, 48), udp=True)
        assert np.allclose(apply(back.from_crop, apply(back.to_crop, c[None])), c)


@pytest.mark.parametrize("height, width, edge, keypoint", [(100, 50, 3.01, 1.30), (200, 100, 1.44, 1.12),
                                                           (400, 200, 0.67, 1.53)])
def test_how_far_the_old_crop_was_from_vitposes(height, width, edge, keypoint):
    """The numbers in docs/fidelity.md: TransPose's crop on a ViTPose model, against the UDP crop."""
    from tpexplain.transforms import Crop, box_to_center_scale
    box = (100.0, 50.0, float(width), float(height))
    old = Crop(*box_to_center_scale(box), 0.0, (256, 192), (64, 48))
    new = Crop(*box_to_center_scale(box, udp=True), 0.0, (256, 192), (64, 48), True)
    qy, qx = np.mgrid[0:256, 0:192]
    q = np.stack([qx.ravel(), qy.ravel()], 1).astype(float)
    off = np.linalg.norm(apply(new.to_crop, apply(old.from_crop, q)) - q, axis=1)   # in crop pixels
    assert off.max() == pytest.approx(edge, abs=0.01) and off.argmax() in (0, q.shape[0] - 1, 191, q.shape[0] - 192)
    hy, hx = np.mgrid[0:64, 0:48]
    h = np.stack([hx.ravel(), hy.ravel()], 1).astype(float)
    kp = np.linalg.norm(apply(old.from_heatmap, h) - apply(new.from_heatmap, h), axis=1)    # in image pixels
    assert kp.max() == pytest.approx(keypoint, abs=0.01)
