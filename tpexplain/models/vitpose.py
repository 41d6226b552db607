"""ViTPose (Xu et al., NeurIPS 2022): a plain ViT on 16x16 patches, then a light heatmap decoder.

    image ─conv 16x16 (pad 2)─▶ 16x12 patch tokens (+ learned position) ─▶ ViT blocks ─▶ LN ─▶ (B, C, 16, 12)
        ─▶ classic decoder: 2 x [deconv 4x4 s2 → BN → ReLU] → 1x1 conv          (64x48 heatmaps)
        ─▶ simple decoder:  ReLU → bilinear x4 → 3x3 conv                         (64x48 heatmaps)

Module and parameter names follow the official mmpose-0.x code (`backbone.*`, `keypoint_head.*`), so the
released checkpoints load strictly. Official details kept: the patch conv has padding 2 (a token's pixels are
rows 16r-2 … 16r+13), `pos_embed` has a slot for a class token that the forward never uses except by adding
it to every patch (`pos[:, 1:] + pos[:, :1]`), and LayerNorm eps is 1e-6.

Checkpoints: `ViTPose.adapt_state_dict` drops the stray `backbone.cls_token` some releases carry and maps
Hugging Face `VitPoseForPoseEstimation` names (separate query/key/value, `head.deconv1` …) onto ours.

Attention capture: the fused `qkv` projection is split inside `Attention.forward` and the softmax is computed
by `tpexplain.models.layers.attend` (the shared recording point), so `tpexplain.record` reads each block's
(192 x 192) patch-to-patch map from inside the block, with no hooks.
"""
from __future__ import annotations

import json
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..keypoints import COCO_KEYPOINTS, FLIP_PAIRS
from ..layout import TokenLayout
from .layers import RecordableAttention, attend

PATCH, PATCH_PADDING = 16, 2


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample (training only)."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


# ---------------------------------------------------------------------------------------------------
# Backbone

class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, PATCH, PATCH, padding=PATCH_PADDING)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Attention(RecordableAttention):
    """Multi-head self-attention from one fused qkv projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = attend(self, q, k, v, self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float,
                 eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


def patch_grid(image_size: tuple[int, int]) -> tuple[int, int]:
    """Token grid of the padded 16x16 patch conv (16x12 for 256x192)."""
    return tuple((s + 2 * PATCH_PADDING - PATCH) // PATCH + 1 for s in image_size)


class ViT(nn.Module):
    def __init__(self, image_size: tuple[int, int], embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.0, eps: float = 1e-6):
        super().__init__()
        self.grid = patch_grid(image_size)
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1, embed_dim))
        # rates rise linearly from 0 (plain Python: this also runs on the meta device)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, r, eps) for r in rates)
        self.last_norm = nn.LayerNorm(embed_dim, eps=eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        b, c, gh, gw = x.shape
        x = x.flatten(2).transpose(1, 2)
        # the class-token slot is never a token: its embedding is added to every patch (official)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for block in self.blocks:
            x = block(x)
        return self.last_norm(x).transpose(1, 2).reshape(b, c, gh, gw)


# ---------------------------------------------------------------------------------------------------
# Decoders (official TopdownHeatmapSimpleHead configurations)

class ClassicDecoder(nn.Module):
    """Two stride-2 deconvolutions (16x12 → 64x48), then a 1x1 conv to the heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int, channels: int = 256):
        super().__init__()
        self.deconv_layers = nn.Sequential(
            nn.ConvTranspose2d(in_channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True),
            nn.ConvTranspose2d(channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True))
        self.final_layer = nn.Conv2d(channels, num_keypoints, 1)
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))


class SimpleDecoder(nn.Module):
    """ReLU, bilinear x4 upsampling, then a 3x3 conv to the heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int, upsample: int = 4):
        super().__init__()
        self.upsample = upsample
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, 3, padding=1)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(F.relu(x), scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return self.final_layer(x)


DECODERS = {"classic": ClassicDecoder, "simple": SimpleDecoder}


# ---------------------------------------------------------------------------------------------------
# The model

class ViTPose(nn.Module):
    """ViTPose-S/B/L/H (embed_dim 384/768/1024/1280, depth 12/12/24/32, heads 12/12/16/16)."""

    def __init__(self, embed_dim: int = 384, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 decoder: str = "classic", num_keypoints: int = 17, image_size: tuple[int, int] = (256, 192),
                 qkv_bias: bool = True, drop_path_rate: float = 0.0, layer_norm_eps: float = 1e-6):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown ViTPose decoder '{decoder}'; use one of {', '.join(DECODERS)}")
        self.image_size, self.num_keypoints, self.decoder = tuple(image_size), num_keypoints, decoder
        self.keypoint_names, self.flip_pairs = COCO_KEYPOINTS, FLIP_PAIRS
        self.backbone = ViT(self.image_size, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate,
                            layer_norm_eps)
        self.keypoint_head = DECODERS[decoder](embed_dim, num_keypoints)
        self.architecture = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads,
                             "mlp_ratio": float(mlp_ratio), "decoder": decoder, "num_keypoints": num_keypoints,
                             "image_size": self.image_size, "qkv_bias": qkv_bias}
        self.layer_norm_eps = layer_norm_eps

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout(grid=self.backbone.grid, stride=(PATCH, PATCH),
                           origin=(-PATCH_PADDING, -PATCH_PADDING))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.keypoint_head(self.backbone(x))

    def apply_hf_config(self, config: dict) -> None:
        """Take a Hugging Face config.json: its LayerNorm eps is adopted (the Hub's configs say 1e-12 where the
        official code has 1e-6); any other field that describes a different model is a ValueError naming it."""
        described = hf_config_kwargs(config)
        for key, (hf_name, value) in described.items():
            ours = self.architecture.get(key)
            if key != "layer_norm_eps" and value != ours:
                if key == "decoder":   # shown as the config says it
                    value, ours = value == "simple", ours == "simple"
                name = getattr(self, "zoo_name", "ViTPose")
                raise ValueError(f"{hf_name} is {_show(value)} but '{name}' has {_show(ours)}: the folder describes "
                                 f"another model; not loaded")
        eps = described["layer_norm_eps"][1]
        for m in self.backbone.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = eps
        self.layer_norm_eps = eps

    @staticmethod
    def adapt_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A released (mmpose-0.x) or Hugging Face state dict in our layout; unused `backbone.cls_token` dropped."""
        if any(k.startswith("backbone.embeddings.") for k in state):
            state = from_hf_state_dict(state)
        return {k: v for k, v in state.items() if k != "backbone.cls_token"}


# ---------------------------------------------------------------------------------------------------
# Hugging Face `VitPoseForPoseEstimation` names → ours (the inverse of its convert_vitpose_to_hf.py)

_HF_RENAMES: tuple[tuple[str, str], ...] = (
    (r"backbone\.embeddings\.position_embeddings$", "backbone.pos_embed"),
    (r"backbone\.embeddings\.patch_embeddings\.projection\.", "backbone.patch_embed.proj."),
    (r"backbone\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"backbone.blocks.\1.attn.proj."),
    (r"backbone\.encoder\.layer\.(\d+)\.layernorm_before\.", r"backbone.blocks.\1.norm1."),
    (r"backbone\.encoder\.layer\.(\d+)\.layernorm_after\.", r"backbone.blocks.\1.norm2."),
    (r"backbone\.encoder\.layer\.(\d+)\.mlp\.", r"backbone.blocks.\1.mlp."),
    (r"backbone\.layernorm\.", "backbone.last_norm."),
    (r"head\.deconv1\.", "keypoint_head.deconv_layers.0."),
    (r"head\.batchnorm1\.", "keypoint_head.deconv_layers.1."),
    (r"head\.deconv2\.", "keypoint_head.deconv_layers.3."),
    (r"head\.batchnorm2\.", "keypoint_head.deconv_layers.4."),
    (r"head\.conv\.", "keypoint_head.final_layer."),
)
_HF_QKV = re.compile(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)")


def from_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename HF keys to ours and fuse each layer's query/key/value rows into one `qkv` (in that order).

    Keys that match nothing are kept as they are, so a strict load names them.
    """
    out: dict[str, torch.Tensor] = {}
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for name, t in state.items():
        m = _HF_QKV.fullmatch(name)
        if m:
            parts.setdefault((m[1], m[3]), {})[m[2]] = t
            continue
        for pattern, repl in _HF_RENAMES:
            new, n = re.subn("^" + pattern, repl, name)
            if n:
                name = new
                break
        out[name] = t
    for (layer, kind), qkv in parts.items():
        if set(qkv) != {"query", "key", "value"}:
            missing = sorted({"query", "key", "value"} - set(qkv))
            raise ValueError(f"Hugging Face checkpoint: layer {layer} has no attention {'/'.join(missing)} {kind}")
        out[f"backbone.blocks.{layer}.attn.qkv.{kind}"] = torch.cat((qkv["query"], qkv["key"], qkv["value"]))
    return out


# ---------------------------------------------------------------------------------------------------
# Hugging Face `VitPoseConfig` (config.json) → what it builds. Absent fields take the Hub library's defaults
# (a VitPoseConfig without backbone_config builds a ViT-B whose head reads layer 4: out_indices=[4]).

_HF_BACKBONE_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "mlp_ratio": 4,
                         "image_size": [256, 192], "patch_size": [16, 16], "num_channels": 3, "qkv_bias": True,
                         "layer_norm_eps": 1e-12, "hidden_act": "gelu", "num_experts": 1}


def hf_config_kwargs(config: dict) -> dict[str, tuple[str, object]]:
    """ViTPose arguments described by a `VitPoseForPoseEstimation` config.json, as {argument: (HF field, value)}.

    A field this implementation cannot build exactly (another patch size, activation, MoE experts, a head
    reading an earlier layer) is a ValueError naming it.
    """
    def need(ok: bool, field: str, value, why: str):
        if not ok:
            raise ValueError(f"{field} is {_show(value)}: {why}")

    need(config.get("model_type", "vitpose") == "vitpose", "model_type", config.get("model_type"),
         "not a VitPoseForPoseEstimation config")
    need(config.get("backbone") is None, "backbone", config.get("backbone"), "only the built-in ViT backbone is supported")
    given = config.get("backbone_config")
    need(given is None or isinstance(given, dict), "backbone_config", given, "expected an object")
    b = dict(_HF_BACKBONE_DEFAULTS, **(given or {}))
    depth = b["num_hidden_layers"]
    need(type(depth) is int and depth > 0, "backbone_config.num_hidden_layers", depth, "expected a positive integer")
    # the head reads the last feature map the backbone returns (stage k = after block k)
    stages = ["stem"] + [f"stage{i}" for i in range(1, depth + 1)]
    if given is None:
        indices = [4]
    elif b.get("out_features") is not None:
        features = b["out_features"]
        need(isinstance(features, list) and features and all(f in stages for f in features),
             "backbone_config.out_features", features, "unknown stages")
        indices = [stages.index(f) for f in features]
    else:
        indices = b.get("out_indices") or [depth]
        need(isinstance(indices, list) and all(type(i) is int and -len(stages) <= i < len(stages) for i in indices),
             "backbone_config.out_indices", indices, "not stage indices")
        indices = [i % len(stages) for i in indices]
    need(max(indices) == depth, "backbone_config.out_indices", indices,
         f"the head would read layer {max(indices)} of {depth}; only the last layer is supported")
    need(list(b["patch_size"]) == [PATCH, PATCH], "backbone_config.patch_size", b["patch_size"], "only 16x16 patches")
    need(b["num_channels"] == 3, "backbone_config.num_channels", b["num_channels"], "only RGB input")
    need(b["hidden_act"] == "gelu", "backbone_config.hidden_act", b["hidden_act"], "only exact GELU")
    need(b["num_experts"] == 1, "backbone_config.num_experts", b["num_experts"], "ViTPose+ experts are not supported")
    eps = b["layer_norm_eps"]
    need(isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps < 1, "backbone_config.layer_norm_eps",
         eps, "expected a small positive number")
    simple = config.get("use_simple_decoder", True)
    if simple:
        need(config.get("scale_factor", 4) == 4, "scale_factor", config.get("scale_factor"), "only x4 upsampling")
    labels = config.get("id2label")
    keypoints = len(labels) if isinstance(labels, dict) else config.get("num_labels", 2)
    size = b["image_size"]
    return {"embed_dim": ("backbone_config.hidden_size", b["hidden_size"]),
            "depth": ("backbone_config.num_hidden_layers", depth),
            "num_heads": ("backbone_config.num_attention_heads", b["num_attention_heads"]),
            "mlp_ratio": ("backbone_config.mlp_ratio", b["mlp_ratio"]),
            "decoder": ("use_simple_decoder", "simple" if simple else "classic"),
            "num_keypoints": ("num_labels (id2label)", keypoints),
            "image_size": ("backbone_config.image_size", tuple(size) if isinstance(size, list) else size),
            "qkv_bias": ("backbone_config.qkv_bias", b["qkv_bias"]),
            "layer_norm_eps": ("backbone_config.layer_norm_eps", float(eps))}


def vitpose_from_hf_config(config: dict, **kwargs) -> ViTPose:
    """A ViTPose built exactly as a Hugging Face config.json describes (freshly initialised weights)."""
    described = {k: v for k, (_, v) in hf_config_kwargs(config).items()}
    return ViTPose(**described, **kwargs)


def _show(value) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value) if isinstance(value, (list, str, bool)) or value is None else str(value)
