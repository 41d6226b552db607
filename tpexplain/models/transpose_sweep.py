"""TransPose's fast occlusion sweep: heatmap values at fixed peaks for many occluded copies of one input.

`tpexplain.analysis.sensitivity` runs the plain batched forward for any model; for TransPose it asks these
sweepers, which skip the work that cannot change the numbers it reports (measured on TP-R-A4, 1 thread:
stem 34% of a forward, encoder 47%, head 14%):

- Head at the peaks only. A keypoint's value is its heatmap at one pixel (its clean peak); that pixel
  depends on 2x2 tokens through TP-R's deconvolution (one token for TP-H's 1x1 head), so the head runs on
  those tokens alone, and the last encoder layer only for them as queries (keys and values still come from
  every token).
- Local stem (TP-R). The ResNet stem is convolutional: a window changes its features only within the
  window's receptive-field footprint. Each stage recomputes just that rectangle (plus the kernel's halo,
  read from the clean features, with the convolution's own zero or -inf padding at the map's border) and
  every other position keeps its clean value. Every window has a rectangle of the same size at every
  stage, so a batch of windows runs as one convolution per layer.

The encoder's other layers mix all tokens and run in full. Everything is exact: results equal the plain
per-window forward up to float rounding (tests/test_occlusion.py checks it).

A sweeper is built once per input as `sweeper(model, x, peaks, keypoints)` (x the clean (3, H, W) input,
peaks (K, 2) heatmap x, y, keypoints (K,) indices) and called per batch as `sweeper(occluded, boxes, window)`
→ (B, K) heatmap values, where `occluded` holds the B copies of x with the windows at `boxes` (y, x) hidden.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layers import Bottleneck, hrnet_stages_forward
from .transpose import TransformerEncoderLayer, TransPoseH, TransPoseR


def transpose_r_sweeper(model: TransPoseR, x: torch.Tensor, peaks: torch.Tensor,
                        keypoints: torch.Tensor) -> TransPoseRSweep | None:
    """The fast sweep of a TransPose-R whose stem is ResNet's (the local stem assumes its ops), else None."""
    return TransPoseRSweep(model, x, peaks, keypoints) if stem_is_resnet(model) else None


def stem_is_resnet(m: TransPoseR) -> bool:
    """Whether the stem and head are the ops the local stem and the deconvolution at the peaks assume."""
    blocks = list(m.layer1) + list(m.layer2)
    return all(type(b) is Bottleneck for b in blocks) and m.conv1.padding == (3, 3) and \
        type(m.deconv_layers[0]) is nn.ConvTranspose2d and m.deconv_layers[0].stride == (2, 2) and \
        m.deconv_layers[0].kernel_size == (4, 4) and m.deconv_layers[0].padding == (1, 1)


# ---------------------------------------------------------------------------------------------------
# The encoder's last layer for a few queries, and the heads at the peaks

def last_layer_at(layer: TransformerEncoderLayer, x: torch.Tensor, pos: torch.Tensor,
                  rows: torch.Tensor) -> torch.Tensor:
    """The post-norm layer's output for the tokens `rows` only (keys and values from all of x)."""
    att = layer.self_attn
    b, n, c = x.shape
    wq, wk, wv = att.in_proj_weight.chunk(3)
    bq, bk, bv = att.in_proj_bias.chunk(3)
    qk_in = x + pos
    q = F.linear(qk_in[:, rows], wq, bq)
    k = F.linear(qk_in, wk, bk)
    v = F.linear(x, wv, bv)
    heads, hd = att.nhead, att.head_dim
    q = q.view(b, -1, heads, hd).transpose(1, 2)
    k, v = (t.view(b, n, heads, hd).transpose(1, 2) for t in (k, v))
    out = F.scaled_dot_product_attention(q, k, v, scale=hd ** -0.5)
    out = att.out_proj(out.transpose(1, 2).reshape(b, -1, c))
    y = layer.norm1(x[:, rows] + out)
    return layer.norm2(y + layer.linear2(F.relu(layer.linear1(y))))


def encode_last_at(model: TransPoseR | TransPoseH, tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Encoder output (B, len(rows), C) for the token indices `rows`, from reduced tokens (B, N, C)."""
    pos = model.pos_embedding.transpose(0, 1)
    layers = model.global_encoder.layers
    for layer in layers[:-1]:
        tokens = layer(tokens, pos)
    return last_layer_at(layers[-1], tokens, pos, rows)


class TransPoseHSweep:
    """TP-H: plain stem (HRNet's receptive field covers the crop), last layer and 1x1 head at the peaks."""

    def __init__(self, model: TransPoseH, x: torch.Tensor, peaks: torch.Tensor, keypoints: torch.Tensor):
        self.model, self.k = model, keypoints
        gw = model.image_size[1] // model.stride
        self.rows = peaks[:, 1] * gw + peaks[:, 0]           # heatmap = token grid (stride 4)

    def __call__(self, occluded: torch.Tensor, boxes, window: int) -> torch.Tensor:
        m = self.model
        r = m.reduce(hrnet_stages_forward(m, occluded))
        out = encode_last_at(m, r.flatten(2).transpose(1, 2), self.rows)    # (B, K, C)
        w = m.final_layer.weight[self.k, :, 0, 0]                          # (K, C)
        return (out * w).sum(-1) + m.final_layer.bias[self.k]


# ---------------------------------------------------------------------------------------------------
# TP-R: the local stem

def affected(a0: int, a1: int, k: int, s: int, p: int, n: int) -> tuple[int, int]:
    """Output range of a (k, s, p) window op that reads any of the input positions [a0, a1)."""
    return max(-(-(a0 + p - k + 1) // s), 0), min((a1 - 1 + p) // s + 1, n)


class _Stage:
    """One op of the stem, for the rectangle each window changes: kernel, stride, padding, output size."""

    def __init__(self, k: int, s: int, p: int, out_hw: tuple[int, int]):
        self.k, self.s, self.p, self.out_hw = k, s, p, out_hw


class _Rects:
    """Per window, the output rectangle a stage computes: origin (B, 2) and a common size (R, Rx)."""

    def __init__(self, origin: np.ndarray, size: tuple[int, int]):
        self.origin, self.size = origin, size


def _windows_to_rects(stages: list[_Stage], boxes, window: int, in_hw: tuple[int, int]) -> list[_Rects]:
    """Affected ranges through the stages, then each stage's compute rectangle: the largest affected size
    over the windows, placed at the affected origin but kept inside the map."""
    ranges = [[(max(y, 0), min(y + window, in_hw[0])), (max(x, 0), min(x + window, in_hw[1]))] for y, x in boxes]
    out = []
    for st in stages:
        ranges = [[affected(*r[d], st.k, st.s, st.p, st.out_hw[d]) for d in (0, 1)] for r in ranges]
        size = tuple(max(r[d][1] - r[d][0] for r in ranges) for d in (0, 1))
        origin = np.array([[min(r[d][0], st.out_hw[d] - size[d]) for d in (0, 1)] for r in ranges])
        out.append(_Rects(origin, size))
    return out


def _gather(clean_padded: torch.Tensor, margin: int, prev: tuple[_Rects, torch.Tensor] | None,
            origin: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) input patches at `origin` (may start before the map: the padding), taken from the clean
    padded map with the previous stage's recomputed rectangles pasted over it."""
    h, w = size
    patches = []
    for b, (y, x) in enumerate(origin):
        patch = clean_padded[:, y + margin:y + margin + h, x + margin:x + margin + w].clone()
        if prev is not None:
            rects, vals = prev
            py, px = rects.origin[b]
            ph, pw = rects.size
            y0, y1 = max(py, y), min(py + ph, y + h)
            x0, x1 = max(px, x), min(px + pw, x + w)
            if y0 < y1 and x0 < x1:
                patch[:, y0 - y:y1 - y, x0 - x:x1 - x] = vals[b, :, y0 - py:y1 - py, x0 - px:x1 - px]
        patches.append(patch)
    return torch.stack(patches)


def _valid(origin: np.ndarray, size: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) 1 inside the map, 0 in the padding, for patches at `origin`."""
    ys = torch.as_tensor(origin[:, 0])[:, None] + torch.arange(size[0])[None]
    xs = torch.as_tensor(origin[:, 1])[:, None] + torch.arange(size[1])[None]
    vy = ((ys >= 0) & (ys < hw[0])).float()
    vx = ((xs >= 0) & (xs < hw[1])).float()
    return (vy[:, :, None] * vx[:, None, :])[:, None]


class TransPoseRSweep:
    """TP-R: local stem, full encoder but the last layer, the last layer and the deconv head at the peaks."""

    def __init__(self, model: TransPoseR, x: torch.Tensor, peaks: torch.Tensor, keypoints: torch.Tensor):
        m = self.model = model
        self.k = keypoints
        # clean features after every stem op; the padded copies carry the ops' own border padding
        f0 = x[None]
        c1 = F.relu(m.bn1(m.conv1(f0)))
        mp = m.maxpool(c1)
        feats = [mp]
        for blk in list(m.layer1) + list(m.layer2):
            feats.append(blk(feats[-1]))
        self.clean = [f0, c1] + feats               # input, conv1, maxpool, every block
        self.blocks = list(m.layer1) + list(m.layer2)
        self.stages = [_Stage(7, 2, 3, tuple(c1.shape[-2:])), _Stage(3, 2, 1, tuple(mp.shape[-2:]))]
        for blk, f in zip(self.blocks, feats[1:]):
            self.stages.append(_Stage(3, blk.conv2.stride[0], 1, tuple(f.shape[-2:])))
        self.padded = [F.pad(c1[0], (1,) * 4, value=-float("inf"))] + [F.pad(f[0], (1,) * 4) for f in feats[:-1]]
        self.tokens = m.reduce(feats[-1]).flatten(2).transpose(1, 2)[0]    # (N, C) clean reduced tokens
        self._plan_head(peaks)

    def _plan_head(self, peaks: torch.Tensor) -> None:
        """For each keypoint's peak pixel, the 2x2 (token, kernel tap) pairs of the stride-2 deconvolution."""
        gh, gw = self.model.token_layout.grid
        taps, toks, ok = [], [], []
        for px, py in peaks.tolist():
            for iy, ky in self._taps(py, gh):
                for ix, kx in self._taps(px, gw):
                    valid = 0 <= iy < gh and 0 <= ix < gw
                    toks.append(min(max(iy, 0), gh - 1) * gw + min(max(ix, 0), gw - 1))
                    taps.append((ky, kx))
                    ok.append(valid)
        self.rows, inverse = torch.unique(torch.as_tensor(toks), return_inverse=True)
        self.which = inverse.view(len(peaks), 4)                                   # (K, 4) into rows
        w = self.model.deconv_layers[0].weight                                     # (Cin, Cout, 4, 4)
        wt = torch.stack([w[:, :, ky, kx] for ky, kx in taps]).view(len(peaks), 4, *w.shape[:2])
        self.deconv_w = wt * torch.as_tensor(ok, dtype=w.dtype).view(len(peaks), 4, 1, 1)

    @staticmethod
    def _taps(out: int, n: int) -> list[tuple[int, int]]:
        # ConvTranspose2d(k=4, s=2, p=1): output o = 2i - 1 + tap
        return [((out + 1 - t) // 2, t) for t in range(4) if (out + 1 - t) % 2 == 0]

    def _stem(self, occluded: torch.Tensor, boxes, window: int) -> torch.Tensor:
        """(B, N, C) reduced tokens of the occluded copies."""
        m = self.model
        rects = _windows_to_rects(self.stages, boxes, window, tuple(occluded.shape[-2:]))
        b = len(boxes)
        last = rects[-1].size
        if last[0] * last[1] >= 0.8 * self.stages[-1].out_hw[0] * self.stages[-1].out_hw[1]:
            # the window reaches (nearly) every token: the patching would only add overhead
            f = m.maxpool(F.relu(m.bn1(m.conv1(occluded))))
            return m.reduce(m.layer2(m.layer1(f))).flatten(2).transpose(1, 2)
        # conv1 reads the occluded image, with the image's own zero padding
        r, st = rects[0], self.stages[0]
        origin = r.origin * st.s - st.p
        size = ((r.size[0] - 1) * st.s + st.k, (r.size[1] - 1) * st.s + st.k)
        padded = F.pad(occluded, (st.p,) * 4)
        patches = torch.stack([padded[i, :, oy + st.p:oy + st.p + size[0], ox + st.p:ox + st.p + size[1]]
                               for i, (oy, ox) in enumerate(origin)])
        vals = F.relu(m.bn1(F.conv2d(patches, m.conv1.weight, None, st.s, 0)))
        prev = (r, vals)
        # maxpool with -inf padding
        r = rects[1]
        patch = _gather(self.padded[0], 1, prev, r.origin * 2 - 1,
                        ((r.size[0] - 1) * 2 + 3, (r.size[1] - 1) * 2 + 3))
        prev = (r, F.max_pool2d(patch, 3, 2, 0))
        for j, blk in enumerate(self.blocks):
            r, st = rects[2 + j], self.stages[2 + j]
            prev = (r, self._block(blk, j, prev, r, st))
        # paste the last stage's rectangles into the clean tokens, then the 1x1 reduce
        r, vals = prev
        gh, gw = self.model.token_layout.grid
        reduced = m.reduce(vals)                                                   # (B, C, R, Rx)
        tokens = self.tokens.view(gh, gw, -1).unsqueeze(0).repeat(b, 1, 1, 1)     # (B, gh, gw, C)
        for i, (oy, ox) in enumerate(r.origin):
            tokens[i, oy:oy + r.size[0], ox:ox + r.size[1]] = reduced[i].permute(1, 2, 0)
        return tokens.view(b, gh * gw, -1)

    def _block(self, blk: Bottleneck, j: int, prev, r: _Rects, st: _Stage) -> torch.Tensor:
        s = st.s
        in_hw = tuple(self.clean[2 + j].shape[-2:])
        origin = r.origin * s - 1
        size = ((r.size[0] - 1) * s + 3, (r.size[1] - 1) * s + 3)
        x = _gather(self.padded[1 + j], 1, prev, origin, size)
        # conv2 pads conv1's output with zeros, not conv1 of zeros
        h = F.relu(blk.bn1(blk.conv1(x))) * _valid(origin, size, in_hw)
        h = F.relu(blk.bn2(F.conv2d(h, blk.conv2.weight, None, s, 0)))
        h = blk.bn3(blk.conv3(h))
        # the block's input at the output positions: inner samples of the patch, one stride apart
        centre = x[:, :, 1:1 + (r.size[0] - 1) * s + 1:s, 1:1 + (r.size[1] - 1) * s + 1:s]
        identity = centre if blk.downsample is None else blk.downsample[1](
            F.conv2d(centre, blk.downsample[0].weight))
        return F.relu(h + identity)

    def __call__(self, occluded: torch.Tensor, boxes, window: int) -> torch.Tensor:
        m = self.model
        tokens = self._stem(occluded, boxes, window)
        enc = encode_last_at(m, tokens, self.rows)                                # (B, T, C)
        feats = enc[:, self.which]                                                # (B, K, 4, Cin)
        h = torch.einsum("bkti,ktio->bko", feats, self.deconv_w)                  # deconv at the peaks
        bn = m.deconv_layers[1]
        h = (h - bn.running_mean) * torch.rsqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        h = F.relu(h)
        w = m.final_layer.weight[self.k, :, 0, 0]                                 # (K, C)
        return (h * w).sum(-1) + m.final_layer.bias[self.k]
