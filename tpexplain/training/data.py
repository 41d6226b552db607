"""Training samples: person crops with heatmap targets, from a COCO file or generated on the fly.

The recipe is the HRNet/TransPose one: box → centre/scale, random scale (±35%), rotation (±45° with
p=0.6), horizontal flip (p=0.5) and half-body crops (p=0.3), Gaussian targets with σ=2 on the 1/4 grid.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..keypoints import FLIP_PAIRS
from ..transforms import Crop, apply_affine, box_to_center_scale, crop_image, gaussian_targets, to_tensor

UPPER_BODY = tuple(range(11))


def _flip(image: np.ndarray, joints: np.ndarray, center: np.ndarray):
    w = image.shape[1]
    image = image[:, ::-1]
    joints = joints.copy()
    joints[:, 0] = np.where(joints[:, 2] > 0, w - 1 - joints[:, 0], 0)
    for a, b in FLIP_PAIRS:
        joints[[a, b]] = joints[[b, a]]
    return image, joints, np.array([w - 1 - center[0], center[1]], np.float32)


def _half_body(joints: np.ndarray, rng: np.random.Generator, aspect: float):
    visible = joints[:, 2] > 0
    upper = [i for i in UPPER_BODY if visible[i]]
    lower = [i for i in range(len(joints)) if i not in UPPER_BODY and visible[i]]
    chosen = upper if (rng.random() < 0.5 and len(upper) > 2) or len(lower) <= 2 else lower
    if len(chosen) < 2:
        return None
    pts = joints[chosen, :2]
    lo, hi = pts.min(0), pts.max(0)
    w, h = hi - lo
    return box_to_center_scale((lo[0], lo[1], w + 1, h + 1), aspect=aspect, padding=1.5)


def make_sample(image: np.ndarray, joints: np.ndarray, bbox, rng: np.random.Generator | None,
                input_size: tuple[int, int] = (256, 192), sigma: float = 2.0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training sample: (input (3, H, W), targets (K, H/4, W/4), target weights (K,)).

    `rng=None` means no augmentation (validation)."""
    aspect = input_size[1] / input_size[0]
    center, scale = box_to_center_scale(bbox, aspect=aspect)
    rot = 0.0
    joints = np.asarray(joints, np.float32).reshape(-1, 3)
    if rng is not None:
        if (joints[:, 2] > 0).sum() > 8 and rng.random() < 0.3:
            half = _half_body(joints, rng, aspect)
            if half is not None:
                center, scale = half
        scale = scale * np.clip(rng.normal() * 0.35 + 1, 0.65, 1.35)
        rot = float(np.clip(rng.normal() * 45, -90, 90)) if rng.random() <= 0.6 else 0.0
        if rng.random() < 0.5:
            image, joints, center = _flip(image, joints, center)
    hm_size = (input_size[0] // 4, input_size[1] // 4)
    crop = Crop(center, scale, rot, input_size, hm_size)
    patch = crop_image(np.ascontiguousarray(image), crop)
    hm_joints = joints.copy()
    hm_joints[:, :2] = apply_affine(joints[:, :2], crop.to_heatmap)
    target, weight = gaussian_targets(hm_joints, hm_size, sigma)
    return to_tensor(patch)[0], torch.from_numpy(target), torch.from_numpy(weight)


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 image; raises ValueError for an unreadable file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class CocoPersons(Dataset):
    """Every person instance with keypoints in a COCO person-keypoints file."""

    def __init__(self, annotations: str | Path, images: str | Path, train: bool = True,
                 input_size: tuple[int, int] = (256, 192), seed: int = 0):
        data = json.loads(Path(annotations).read_text())
        files = {im["id"]: im["file_name"] for im in data["images"]}
        self.items = [(files[a["image_id"]], np.array(a["keypoints"], np.float32).reshape(-1, 3), a["bbox"])
                      for a in data["annotations"]
                      if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)
                      and a["bbox"][2] > 1 and a["bbox"][3] > 1]
        self.images, self.train, self.input_size, self.seed = Path(images), train, input_size, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        name, joints, bbox = self.items[i]
        rng = np.random.default_rng((self.seed, i, torch.initial_seed() % 2**32)) if self.train else None
        return make_sample(read_image(self.images / name), joints, bbox, rng, self.input_size)


class SyntheticPersons(Dataset):
    """People drawn by `tpexplain.training.synth` on the fly: sample i comes from image seed (seed, i)."""

    def __init__(self, length: int, seed: int = 0, train: bool = True, input_size: tuple[int, int] = (256, 192)):
        self.length, self.seed, self.train, self.input_size = length, seed, train, input_size

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        from . import synth
        rng = np.random.default_rng((self.seed, i))
        image, people = synth.render_image(int(rng.integers(2**62)))
        people = [p for p in people if (p["keypoints"][:, 2] > 0).sum() >= 3] or people
        person = people[int(rng.integers(len(people)))]
        return make_sample(image, person["keypoints"], person["bbox"], rng if self.train else None,
                           self.input_size)
