"""TransPose (Yang et al., ICCV 2021): CNN stem → 1x1 reduce → transformer encoder → heatmaps.

TransPose-R keeps the first two stages of ResNet-50 (stride 8, 32x24 tokens for a 256x192 input) and
upsamples with one deconvolution; TransPose-H keeps the first three stages of HRNet (stride 4, 64x48
tokens) and predicts heatmaps with a 1x1 conv. Module and parameter names follow the official code so
official checkpoints load with `strict=True`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layout import TokenLayout
from .attention import RecordableAttention, attend


# ---------------------------------------------------------------------------------------------------
# Encoder (DETR-style, post-norm; sine position added to Q and K at every layer, never to V)

def sine_position_embedding(h: int, w: int, d_model: int, temperature: float = 10000.0) -> torch.Tensor:
    """The official fixed 2-D sine embedding, shape (h*w, 1, d_model); y channels first, then x."""
    half = d_model // 2
    y = torch.arange(1, h + 1, dtype=torch.float32)[:, None].expand(h, w) / (h + 1e-6) * 2 * math.pi
    x = torch.arange(1, w + 1, dtype=torch.float32)[None, :].expand(h, w) / (w + 1e-6) * 2 * math.pi
    dim_t = temperature ** (2 * (torch.arange(half, dtype=torch.float32) // 2) / half)
    py, px = y[..., None] / dim_t, x[..., None] / dim_t
    # interleave sin on even channels, cos on odd ones
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=3).flatten(2)
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=3).flatten(2)
    return torch.cat((py, px), dim=2).reshape(h * w, 1, d_model)


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
# CNN blocks (ResNet v1.5 bottleneck, HRNet basic block and multi-resolution module)

def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=0.1)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = _bn(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _bn(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


def make_bottlenecks(inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    downsample = None
    if stride != 1 or inplanes != planes * 4:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), _bn(planes * 4))
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(planes * 4, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), _bn(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then every branch fused into every output resolution."""

    def __init__(self, channels: list[int], blocks: int = 4, multi_scale_output: bool = True):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c) for _ in range(blocks))) for c in channels)
        fuse = []
        for i in range(n if multi_scale_output else 1):
            row: list[nn.Module | None] = []
            for j in range(n):
                if j > i:    # lower resolution: 1x1 conv then nearest upsampling
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False),
                                             _bn(channels[i]), nn.Upsample(scale_factor=2 ** (j - i))))
                elif j == i:
                    row.append(None)
                else:        # higher resolution: a chain of strided 3x3 convs
                    steps = [_conv_bn(channels[j], channels[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for row in self.fuse_layers:
            y = 0
            for j, f in enumerate(row):
                y = y + (xs[j] if f is None else f(xs[j]))
            out.append(F.relu(y))
        return out


def add_hrnet_stages(module: nn.Module, width: int) -> None:
    """Give `module` HRNet's stem and stages 1-3 under the official attribute names (TransPose-H keeps them
    at the top level, TokenPose-B/L in a submodule); only the stride-4 branch leaves stage 3."""
    c = [width, width * 2, width * 4]
    module.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
    module.bn1 = _bn(64)
    module.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
    module.bn2 = _bn(64)
    module.layer1 = make_bottlenecks(64, 64, 4)
    module.transition1 = nn.ModuleList([_conv_bn(256, c[0], 3, 1, relu=True),
                                        nn.Sequential(_conv_bn(256, c[1], 3, 2, relu=True))])
    module.stage2 = nn.Sequential(HighResolutionModule(c[:2]))
    module.transition2 = nn.ModuleList([None, None, nn.Sequential(_conv_bn(c[1], c[2], 3, 2, relu=True))])
    module.stage3 = nn.Sequential(*(HighResolutionModule(c, multi_scale_output=i < 3) for i in range(4)))


def hrnet_stages_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The stride-4 features of the stages added by `add_hrnet_stages`."""
    x = F.relu(module.bn1(module.conv1(x)))
    x = module.layer1(F.relu(module.bn2(module.conv2(x))))
    xs = module.stage2([t(x) for t in module.transition1])
    return module.stage3(xs + [module.transition2[2](xs[-1])])[0]


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
        self.bn1 = _bn(stem_channels)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = make_bottlenecks(stem_channels, planes[0], blocks[0])
        self.layer2 = make_bottlenecks(planes[0] * 4, planes[1], blocks[1], stride=2)
        self.reduce = nn.Conv2d(planes[1] * 4, d_model, 1, bias=False)
        self._init_encoder(image_size, d_model, nhead, dim_feedforward, num_layers, dropout, attn_dropout)
        self.deconv_layers = nn.Sequential(
            nn.ConvTranspose2d(d_model, deconv_channels, 4, 2, 1, bias=False), _bn(deconv_channels),
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
