"""TransPose (Yang et al., ICCV 2021): CNN stem → 1x1 reduce → transformer encoder → heatmaps.

    image ─stem (ResNet / HRNet)─▶ features ─1x1 reduce─▶ tokens ─▶ post-norm encoder ─▶ head ─▶ heatmaps
                                                   (sine position added to Q and K at every layer)

TransPose-R keeps the first two stages of ResNet-50 (stride 8, 32x24 tokens for a 256x192 input) and
upsamples with one deconvolution; TransPose-H keeps the first three stages of HRNet (stride 4, 64x48
tokens) and predicts heatmaps with a 1x1 conv. The stems are in `tpexplain.models.layers`. Module and
parameter names follow the official code so official checkpoints load with `strict=True`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layout import TokenLayout
from .layers import (RecordableAttention, add_hrnet_stages, attend, batch_norm, hrnet_stages_forward,
                     make_bottlenecks, sine_position_embedding)


# ---------------------------------------------------------------------------------------------------
# Encoder (DETR-style, post-norm; sine position added to Q and K at every layer, never to V)

class MultiheadSelfAttention(RecordableAttention):
    """Self-attention with `nn.MultiheadAttention`'s parameter names (packed in_proj, out_proj)."""

    def __init__(self, d_model: int, nhead: int, attn_dropout: float = 0.0):
        super().__init__()
        self.nhead, self.head_dim = nhead, d_model // nhead
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        self.attn_dropout = attn_dropout
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        qk_in = x + pos
        q, k, v = F.linear(qk_in, wq, bq), F.linear(qk_in, wk, bk), F.linear(x, wv, bv)
        q, k, v = (t.view(b, n, self.nhead, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = attend(self, q, k, v, self.head_dim ** -0.5)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1,
                 attn_dropout: float = 0.0):
        super().__init__()
        self.self_attn = MultiheadSelfAttention(d_model, nhead, attn_dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.self_attn(x, pos)))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class TransformerEncoder(nn.Module):
    def __init__(self, num_layers: int, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(TransformerEncoderLayer(**layer_kwargs) for _ in range(num_layers))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, pos)
        return x


# ---------------------------------------------------------------------------------------------------
# The two TransPose families

class _TransPoseBase(nn.Module):
    stride: int

    def _init_encoder(self, image_size: tuple[int, int], d_model: int, nhead: int, dim_feedforward: int,
                      num_layers: int, dropout: float, attn_dropout: float) -> None:
        self.image_size = image_size
        h, w = image_size[0] // self.stride, image_size[1] // self.stride
        self.pos_embedding = nn.Parameter(sine_position_embedding(h, w, d_model), requires_grad=False)
        self.global_encoder = TransformerEncoder(num_layers, d_model=d_model, nhead=nhead,
                                                 dim_feedforward=dim_feedforward, dropout=dropout,
                                                 attn_dropout=attn_dropout)

    @property
    def token_layout(self) -> TokenLayout:
        h, w = self.image_size[0] // self.stride, self.image_size[1] // self.stride
        return TokenLayout(grid=(h, w), stride=(self.stride, self.stride))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)               # (B, h*w, C), row-major like the official code
        tokens = self.global_encoder(tokens, self.pos_embedding.transpose(0, 1))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class TransPoseR(_TransPoseBase):
    """TransPose-R: ResNet stem and two bottleneck stages (stride 8), encoder, one deconv, 1x1 head."""

    stride = 8

    def __init__(self, num_layers: int = 4, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 1024,
                 num_keypoints: int = 17, image_size: tuple[int, int] = (256, 192),
                 stem_channels: int = 64, blocks: tuple[int, int] = (3, 4), planes: tuple[int, int] = (64, 128),
                 deconv_channels: int = 256, dropout: float = 0.1, attn_dropout: float = 0.0):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.conv1 = nn.Conv2d(3, stem_channels, 7, 2, 3, bias=False)
        self.bn1 = batch_norm(stem_channels)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = make_bottlenecks(stem_channels, planes[0], blocks[0])
        self.layer2 = make_bottlenecks(planes[0] * 4, planes[1], blocks[1], stride=2)
        self.reduce = nn.Conv2d(planes[1] * 4, d_model, 1, bias=False)
        self._init_encoder(image_size, d_model, nhead, dim_feedforward, num_layers, dropout, attn_dropout)
        self.deconv_layers = nn.Sequential(
            nn.ConvTranspose2d(d_model, deconv_channels, 4, 2, 1, bias=False), batch_norm(deconv_channels),
            nn.ReLU(inplace=True))
        self.final_layer = nn.Conv2d(deconv_channels, num_keypoints, 1)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.final_layer(self.deconv_layers(self._encode(x)))


class TransPoseH(_TransPoseBase):
    """TransPose-H: HRNet stem, stage 1-3 (only the stride-4 branch leaves stage 3), encoder, 1x1 head."""

    stride = 4

    def __init__(self, width: int = 48, num_layers: int = 4, d_model: int = 96, nhead: int = 1,
                 dim_feedforward: int = 192, num_keypoints: int = 17, image_size: tuple[int, int] = (256, 192),
                 dropout: float = 0.1, attn_dropout: float = 0.0):
        super().__init__()
        self.num_keypoints = num_keypoints
        add_hrnet_stages(self, width)
        self.reduce = nn.Conv2d(width, d_model, 1, bias=False)
        self._init_encoder(image_size, d_model, nhead, dim_feedforward, num_layers, dropout, attn_dropout)
        self.final_layer = nn.Conv2d(d_model, num_keypoints, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.reduce:
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self._encode(hrnet_stages_forward(self, x)))
