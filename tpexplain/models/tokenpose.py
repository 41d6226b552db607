"""TokenPose (Li et al., ICCV 2021): visual tokens + one learnable token per keypoint → transformer → heatmaps.

    image ─(stem)─▶ features ─patchify─▶ visual tokens (+ 2-D sine position)
                                                 │
    [K keypoint tokens] ─────────────────────────┴─▶ pre-norm transformer ─▶ keypoint tokens ─MLP─▶ heatmaps

Variants (official leeyegy/TokenPose; module and parameter names follow it so its state dicts load strictly):
- T: no stem, 16x12-pixel patches of the RGB image (keys under `transformer.`).
- S-v1 / S-v2: a small ResNet stem (two stride-2 convs + `layer1`) inside the core (keys under `features.`),
  4x3 / 2x2 patches of the 1/4-resolution features.
- B / L: HRNet-W32 / W48 stages 1–3 (`pre_feature.`) then the core (`transformer.`). L splits its depth into
  three transformers and concatenates the keypoint tokens after each one for a single-layer head.

Official quirks kept on purpose: the sequence is [keypoint tokens, visual tokens]; the sine embedding is added to
the visual tokens only, and re-added before every layer but the first of each transformer ('sine-full');
TokenPose-S scales attention by dim^-0.5 (it never passes `scale_with_head`), the others by head_dim^-0.5.

Attention capture: every layer's `Attention` computes softmax(q kᵀ · scale) through
`tpexplain.models.layers.attend` (the shared recording point), so `tpexplain.record` sees the full
(K+N)x(K+N) map. Row k < K is keypoint k's token: its columns K: are the per-keypoint dependency map over the
token grid, its columns :K the keypoint-to-keypoint attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..keypoints import COCO_KEYPOINTS, FLIP_PAIRS, MPII
from ..layout import TokenLayout
from .layers import (RecordableAttention, add_hrnet_stages, attend, batch_norm, hrnet_stages_forward,
                     make_bottlenecks, sine_position_embedding)


# ---------------------------------------------------------------------------------------------------
# The HRNet stem of TokenPose-B/L (official HRNET_base: stages 1-3, only the 1/4 branch leaves stage 3)

class HRNetStem(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        add_hrnet_stages(self, width)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hrnet_stages_forward(self, x)


# ---------------------------------------------------------------------------------------------------
# The transformer (pre-norm; `Residual(PreNorm(fn))` gives the official key paths `layers.i.0.fn.fn.to_qkv`)

class Attention(RecordableAttention):
    """Multi-head self-attention with one fused, bias-free qkv projection."""

    def __init__(self, dim: int, heads: int, scale_with_head: bool, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        # the official default (scale_with_head=False, used by TokenPose-S) scales by the model width
        self.scale = (dim // heads) ** -0.5 if scale_with_head else dim ** -0.5
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (t.view(b, n, self.heads, c // self.heads).transpose(1, 2) for t in self.to_qkv(x).chunk(3, -1))
        out = attend(self, q, k, v, self.scale)
        return self.to_out(out.transpose(1, 2).reshape(b, n, c))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class Transformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, num_keypoints: int, scale_with_head: bool,
                 dropout: float = 0.0):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.layers = nn.ModuleList(
            nn.ModuleList([Residual(PreNorm(dim, Attention(dim, heads, scale_with_head, dropout))),
                           Residual(PreNorm(dim, FeedForward(dim, mlp_dim, dropout)))])
            for _ in range(depth))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        k = self.num_keypoints
        for i, (attn, ff) in enumerate(self.layers):
            if i > 0:   # 'sine-full': position re-injected into the visual tokens before every later layer
                x = torch.cat((x[:, :k], x[:, k:] + pos), dim=1)
            x = ff(attn(x))
        return x


# ---------------------------------------------------------------------------------------------------
# The core: official TokenPose_TB_base, TokenPose_S_base (resnet_stem=True) and TokenPose_L_base (stages=3)

def _init_linear_and_norm(module: nn.Module) -> None:
    """The official `_init_weights`: Linear trunc_normal(.02) with zero bias, LayerNorm (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class TokenPoseBase(nn.Module):
    """Patchify `feature` (B, C, H, W), prepend the keypoint tokens, run the transformer(s), predict heatmaps."""

    def __init__(self, feature_size: tuple[int, int], patch_size: tuple[int, int], channels: int,
                 num_keypoints: int, dim: int, depth: int, heads: int, mlp_dim: int, heatmap_size: tuple[int, int],
                 scale_with_head: bool, stages: int = 1, resnet_stem: bool = False, dropout: float = 0.0,
                 emb_dropout: float = 0.0):
        super().__init__()
        if depth % stages:
            raise ValueError(f"depth {depth} does not split into {stages} transformers")
        gh, gw = feature_size[0] // patch_size[0], feature_size[1] // patch_size[1]
        self.patch_size, self.grid, self.heatmap_size = tuple(patch_size), (gh, gw), tuple(heatmap_size)
        self.num_keypoints, self.stages, self.resnet_stem = num_keypoints, stages, resnet_stem
        self.keypoint_token = nn.Parameter(torch.zeros(1, num_keypoints, dim))
        # fixed, but a Parameter as in the official code, so it is part of the state dict
        pos = sine_position_embedding(gh, gw, dim).reshape(1, gh * gw, dim)
        self.pos_embedding = nn.Parameter(pos, requires_grad=False)
        self.patch_to_embedding = nn.Linear(channels * patch_size[0] * patch_size[1], dim)
        self.dropout = nn.Dropout(emb_dropout)
        if resnet_stem:   # TokenPose-S: its stem's weights live beside the tokens (`features.conv1`, ...)
            self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
            self.bn1 = batch_norm(64)
            self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
            self.bn2 = batch_norm(64)
            self.layer1 = make_bottlenecks(64, 64, 4)
        args = dict(dim=dim, depth=depth // stages, heads=heads, mlp_dim=mlp_dim, num_keypoints=num_keypoints,
                    scale_with_head=scale_with_head, dropout=dropout)
        if stages == 1:
            self.transformer = Transformer(**args)
        else:
            for s in range(stages):
                setattr(self, f"transformer{s + 1}", Transformer(**args))
        head_in, hidden, out = dim * stages, heatmap_size[0] * heatmap_size[1] // 8, heatmap_size[0] * heatmap_size[1]
        if head_in <= hidden // 2:    # the official rule: two layers when the token is narrow enough
            self.mlp_head = nn.Sequential(nn.LayerNorm(head_in), nn.Linear(head_in, hidden), nn.LayerNorm(hidden),
                                          nn.Linear(hidden, out))
        else:
            self.mlp_head = nn.Sequential(nn.LayerNorm(head_in), nn.Linear(head_in, out))
        nn.init.trunc_normal_(self.keypoint_token, std=0.02)
        _init_linear_and_norm(self)

    def transformers(self) -> list[Transformer]:
        return [self.transformer] if self.stages == 1 else [getattr(self, f"transformer{s + 1}")
                                                            for s in range(self.stages)]

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        if self.resnet_stem:
            feature = F.relu(self.bn1(self.conv1(feature)))
            feature = self.layer1(F.relu(self.bn2(self.conv2(feature))))
        b, c, _, _ = feature.shape
        (gh, gw), (p1, p2) = self.grid, self.patch_size
        # einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)': row-major tokens, channel innermost in a patch
        x = feature.reshape(b, c, gh, p1, gw, p2).permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, p1 * p2 * c)
        x = self.patch_to_embedding(x) + self.pos_embedding
        x = self.dropout(torch.cat((self.keypoint_token.expand(b, -1, -1), x), dim=1))
        k = self.num_keypoints
        outputs = []
        for transformer in self.transformers():
            x = transformer(x, self.pos_embedding)
            outputs.append(x[:, :k])
        heatmaps = self.mlp_head(torch.cat(outputs, dim=2))
        return heatmaps.view(b, k, *self.heatmap_size)


# ---------------------------------------------------------------------------------------------------
# The wrappers (official TokenPose_T / _S / _B / _L), chosen by `stem`

STEMS = ("none", "resnet", "hrnet")


class TokenPose(nn.Module):
    """TokenPose-T (stem="none"), -S (stem="resnet") or -B/-L (stem="hrnet", width 32/48; L: stages=3)."""

    def __init__(self, stem: str = "none", patch_size: tuple[int, int] = (16, 12), depth: int = 12, heads: int = 16,
                 dim: int = 192, mlp_dim: int = 576, stages: int = 1, width: int = 48, num_keypoints: int = 17,
                 image_size: tuple[int, int] = (256, 192), scale_with_head: bool | None = None,
                 dropout: float = 0.0, emb_dropout: float = 0.0):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown TokenPose stem '{stem}'; use one of {', '.join(STEMS)}")
        self.stem, self.image_size, self.num_keypoints = stem, tuple(image_size), num_keypoints
        self.keypoint_names = (COCO_KEYPOINTS if num_keypoints == 17 else MPII.names if num_keypoints == 16
                               else tuple(f"kp{i}" for i in range(num_keypoints)))
        self.flip_pairs = FLIP_PAIRS if num_keypoints == 17 else MPII.flip_pairs if num_keypoints == 16 else ()
        if scale_with_head is None:   # as the official code: only TokenPose-S leaves it at False
            scale_with_head = stem != "resnet"
        h, w = self.image_size
        # T patches the image itself; S and B/L patch 1/4-resolution features (256 or `width` channels)
        self.feature_stride = 1 if stem == "none" else 4
        feature_size = (h // self.feature_stride, w // self.feature_stride)
        channels = {"none": 3, "resnet": 256, "hrnet": width}[stem]
        core = TokenPoseBase(feature_size, patch_size, channels, num_keypoints, dim, depth, heads, mlp_dim,
                             (h // 4, w // 4), scale_with_head, stages, resnet_stem=stem == "resnet",
                             dropout=dropout, emb_dropout=emb_dropout)
        if stem == "resnet":
            self.features = core
        else:
            if stem == "hrnet":
                self.pre_feature = HRNetStem(width)
            self.transformer = core

    @property
    def core(self) -> TokenPoseBase:
        return self.features if self.stem == "resnet" else self.transformer

    @property
    def token_layout(self) -> TokenLayout:
        core = self.core
        stride = (core.patch_size[0] * self.feature_stride, core.patch_size[1] * self.feature_stride)
        return TokenLayout(grid=core.grid, stride=stride, special=tuple(self.keypoint_names))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem == "resnet":
            return self.features(x)
        if self.stem == "hrnet":
            x = self.pre_feature(x)
        return self.transformer(x)
