"""The top-down pose pipeline shared by every front end: boxes → crops → heatmaps → keypoints."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .decode import BLUR_KERNEL, decode, flip_back
from .keypoints import FLIP_PAIRS
from .models.vitpose import ViTPose
from .transforms import Crop, apply_affine, box_to_center_scale, crop_image, to_tensor


@dataclass
class Poses:
    """Predictions for a batch of person crops."""

    crops: list[Crop]
    inputs: torch.Tensor          # (B, 3, H, W) normalised model input
    heatmaps: torch.Tensor        # (B, K, h, w), flip-averaged when the flip test ran
    keypoints: np.ndarray         # (B, K, 3) x, y in image pixels and the peak value as score
    keypoints_crop: np.ndarray    # (B, K, 2) the same points in input-crop pixels
    keypoints_heatmap: np.ndarray | None = None  # (B, K, 2) as decoded, in heatmap pixels


def input_size(model: nn.Module) -> tuple[int, int]:
    return tuple(getattr(model, "image_size", (256, 192)))


def make_crops(image: np.ndarray, boxes: list, size: tuple[int, int], heatmap_size: tuple[int, int],
               udp: bool = False) -> tuple[list[Crop], torch.Tensor]:
    """Affine crops of `image` (RGB uint8) for person boxes (x, y, w, h); `udp`: ViTPose's crop convention."""
    crops = []
    for box in boxes:
        center, scale = box_to_center_scale(box, aspect=size[1] / size[0], udp=udp)
        crops.append(Crop(center, scale, 0.0, size, heatmap_size, udp))
    return crops, to_tensor(np.stack([crop_image(image, c) for c in crops]))


@torch.no_grad()
def forward_heatmaps(model: nn.Module, x: torch.Tensor, flip: bool = True) -> torch.Tensor:
    """Heatmaps for a batch, averaged with the flip test's mirrored pass when `flip`.

    Both passes run as one batch; the un-flipped images come first, so a recorder attached around this
    call holds the un-flipped attention at batch indices [0, B).
    """
    if not flip:
        return model(x)
    out = model(torch.cat([x, x.flip(-1)]))
    b = x.shape[0]
    return 0.5 * (out[:b] + flip_back(out[b:], getattr(model, "flip_pairs", FLIP_PAIRS)))


def uses_udp(model: nn.Module) -> bool:
    """Whether the model's official pipeline is mmpose's UDP (ViTPose: its box centre, crop warp and
    UDP-DARK decoding) rather than TransPose/TokenPose's (`box2cs`, `get_affine_transform`, `get_final_preds`)."""
    return isinstance(model, ViTPose)


def heatmaps_to_keypoints(heatmaps: torch.Tensor, crops: list[Crop], dark: bool = True, decode_method: str =
                          "official", udp: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image keypoints (B, K, 3) with scores, crop keypoints (B, K, 2), heatmap keypoints (B, K, 2))."""
    coords, scores = decode(heatmaps.float().cpu().numpy(), dark=dark, method=decode_method, udp=udp,
                            kernel=BLUR_KERNEL)
    image_kp = np.zeros(coords.shape[:2] + (3,), np.float32)
    crop_kp = np.zeros(coords.shape, np.float32)
    for i, crop in enumerate(crops):
        image_kp[i, :, :2] = apply_affine(coords[i], crop.from_heatmap)
        crop_kp[i] = apply_affine(image_kp[i, :, :2], crop.to_crop)
    image_kp[..., 2] = scores
    return image_kp, crop_kp, coords


def predict(model: nn.Module, image: np.ndarray, boxes: list | None = None, flip: bool = True,
            decode: str = "official") -> Poses:
    """Poses of the people in `boxes` (default: the whole image as one box).

    `decode`: "official" (the model family's own post-processing) or "guarded" (docs/fidelity.md).
    """
    if boxes is None:
        boxes = [(0, 0, image.shape[1], image.shape[0])]
    size = input_size(model)
    udp = uses_udp(model)
    crops, x = make_crops(image, boxes, size, heatmap_size(model), udp)
    param = next(model.parameters())
    heatmaps = forward_heatmaps(model, x.to(param.device), flip)
    kp, kp_crop, kp_hm = heatmaps_to_keypoints(heatmaps, crops, decode_method=decode, udp=udp)
    return Poses(crops, x, heatmaps, kp, kp_crop, kp_hm)


def heatmap_size(model: nn.Module) -> tuple[int, int]:
    h, w = input_size(model)
    return h // 4, w // 4
