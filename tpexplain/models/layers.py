"""Blocks shared by the model families: the recordable attention, the sine position embedding, the CNN stems.

- Attention. Each attention module of our models calls `attend(self, q, k, v, scale)`. With nothing recording
  it takes the fused kernel (SDPA), so there is no cost when not recording. A recorder sets
  `module.attention_sink` for the duration of a forward pass; the sink then computes attention in a form it
  can keep. This avoids hooks entirely: a fused kernel can never silently skip a hook, and the recorded
  probabilities are the ones that multiply V (so they carry gradients when asked to).
- `sine_position_embedding`: the fixed 2-D sine embedding of TransPose and TokenPose.
- CNN blocks: ResNet's bottleneck (TransPose-R, TokenPose-S) and HRNet's stages 1-3 (TransPose-H,
  TokenPose-B/L), with the official module names so that checkpoints load strictly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------------
# Attention: the one place where every model family computes it

class RecordableAttention(nn.Module):
    """Base of every attention module that `tpexplain.record` can read."""

    attention_sink = None  # set on the instance only while recording
    attn_dropout: float = 0.0


def attend(module: RecordableAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v over (B, H, N, d) tensors, recorded if a sink is attached."""
    sink = module.attention_sink
    if sink is not None:
        return sink.attend(module, q, k, v, scale)
    return fused_attention(module, q, k, v, scale)


def fused_attention(module: RecordableAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    scale: float) -> torch.Tensor:
    """The fast path: PyTorch's fused kernel, which never materialises the probabilities."""
    p = module.attn_dropout if module.training else 0.0
    return F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=scale)


def explicit_attention(module: RecordableAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The same computation written out, returning (output, post-softmax probabilities)."""
    probs = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
    dropped = F.dropout(probs, module.attn_dropout, module.training) if module.attn_dropout else probs
    return dropped @ v, probs


# ---------------------------------------------------------------------------------------------------
# Position

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


# ---------------------------------------------------------------------------------------------------
# CNN blocks (ResNet v1.5 bottleneck, HRNet basic block and multi-resolution module)

def batch_norm(c: int) -> nn.BatchNorm2d:
    """The stems' BatchNorm (the official momentum)."""
    return nn.BatchNorm2d(c, momentum=0.1)


def conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool) -> nn.Sequential:
    """Conv (same padding, no bias), BatchNorm, and optionally ReLU: HRNet's transitions and fusions."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), batch_norm(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = batch_norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = batch_norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = batch_norm(planes * 4)
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
        self.bn1 = batch_norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = batch_norm(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


def make_bottlenecks(inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """A ResNet stage: `blocks` bottlenecks, the first one strided and projecting the shortcut if needed."""
    downsample = None
    if stride != 1 or inplanes != planes * 4:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), batch_norm(planes * 4))
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(planes * 4, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


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
                                             batch_norm(channels[i]), nn.Upsample(scale_factor=2 ** (j - i))))
                elif j == i:
                    row.append(None)
                else:        # higher resolution: a chain of strided 3x3 convs
                    steps = [conv_bn(channels[j], channels[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(conv_bn(channels[j], channels[i], 3, 2, relu=False))
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
    module.bn1 = batch_norm(64)
    module.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
    module.bn2 = batch_norm(64)
    module.layer1 = make_bottlenecks(64, 64, 4)
    module.transition1 = nn.ModuleList([conv_bn(256, c[0], 3, 1, relu=True),
                                        nn.Sequential(conv_bn(256, c[1], 3, 2, relu=True))])
    module.stage2 = nn.Sequential(HighResolutionModule(c[:2]))
    module.transition2 = nn.ModuleList([None, None, nn.Sequential(conv_bn(c[1], c[2], 3, 2, relu=True))])
    module.stage3 = nn.Sequential(*(HighResolutionModule(c, multi_scale_output=i < 3) for i in range(4)))


def hrnet_stages_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The stride-4 features of the stages added by `add_hrnet_stages`."""
    x = F.relu(module.bn1(module.conv1(x)))
    x = module.layer1(F.relu(module.bn2(module.conv2(x))))
    xs = module.stage2([t(x) for t in module.transition1])
    return module.stage3(xs + [module.transition2[2](xs[-1])])[0]
