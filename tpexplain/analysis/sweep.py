"""The occlusion sweep's engine: heatmap values at fixed peaks for many occluded copies of one input.

`sweep` runs the plain batched forward for any model.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def occlude(x: torch.Tensor, fill: torch.Tensor, boxes: list[tuple[int, int]], window: int) -> torch.Tensor:
    """A batch of copies of `x` (3, H, W), copy i with the window at boxes[i] = (y, x) taken from `fill`."""
    xb = x.unsqueeze(0).repeat(len(boxes), 1, 1, 1)
    for i, (y, x0) in enumerate(boxes):
        xb[i, :, y:y + window, x0:x0 + window] = fill[:, y:y + window, x0:x0 + window]
    return xb


@torch.no_grad()
def sweep(model: nn.Module, x: torch.Tensor, fill: torch.Tensor, boxes: list[tuple[int, int]], window: int,
          keypoints: list[int], batch_size: int = 16, fast: bool = True
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean values (K,), peaks (K, 2) heatmap x, y, drops (K, len(boxes))) for the keypoint indices given.

    The value of keypoint k is its heatmap at the clean input's (un-flipped) argmax; a drop is the clean
    value minus the occluded one.
    """
    x = x.float()
    clean_maps = model(x[None])[0]                         # (J, h, w)
    k = torch.as_tensor(keypoints, dtype=torch.long)
    flat = clean_maps.flatten(1)[k].argmax(1)              # (K,)
    clean = clean_maps.flatten(1)[k, flat]
    values = []
    for i in range(0, len(boxes), batch_size):
        out = model(occlude(x, fill, boxes[i:i + batch_size], window))
        values.append(out.flatten(2)[:, k, flat])         # (b, K)
    values = torch.cat(values).T                           # (K, n)
    hw = clean_maps.shape[-1]
    peaks = torch.stack([flat % hw, flat // hw], 1)
    return clean.numpy(), peaks.numpy(), (clean[:, None] - values).numpy()
