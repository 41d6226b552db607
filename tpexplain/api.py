"""The Python API that every front end (CLI, notebook, batch) stands on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import zoo
from .zoo.checkpoint import CheckpointError, load_checkpoint
from .decode import flip_back
from .explanation import Explanation
from .inference import Poses, heatmap_size, heatmaps_to_keypoints, input_size, make_crops, predict
from .io import read_image, to_rgb8
from .keypoints import COCO_KEYPOINTS, FLIP_PAIRS
from .record import record_attention

FULL_MAPS_BUDGET = 256 * 2**20  # bytes of per-head maps above which "auto" records q/k instead


class PoseModel:
    """A pose model with its name and token layout; `explain` runs it and records its attention."""

    def __init__(self, model: nn.Module, name: str = "model", keypoint_names: tuple[str, ...] = COCO_KEYPOINTS):
        self.model = model.eval()
        self.name = name
        self.keypoint_names = keypoint_names

    def __repr__(self) -> str:
        lay = self.layout
        return (f"PoseModel('{self.name}', {type(self.model).__name__}, tokens {lay.grid[0]}x{lay.grid[1]}"
                f"{f' + {len(lay.special)} special' if lay.special else ''}, stride {lay.stride[0]:g})")

    @property
    def layout(self):
        return self.model.token_layout

    @property
    def input_size(self) -> tuple[int, int]:
        return input_size(self.model)

    def predict(self, image: np.ndarray | str | Path, boxes: list | None = None, flip: bool = True) -> Poses:
        """Keypoints for each person box (x, y, w, h); the whole image when no box is given."""
        return predict(self.model, _image(image), boxes, flip)

    def auto_mode(self, batch: int = 1) -> str:
        lay = self.layout
        layers = len(_attention_layers(self.model))
        heads = _heads(self.model)
        return "full" if batch * layers * heads * lay.num_tokens ** 2 * 4 <= FULL_MAPS_BUDGET else "qk"

    @torch.no_grad()
    def explain(self, image: np.ndarray | str | Path, bbox: tuple | None = None, flip: bool = True,
                mode: str = "auto") -> Explanation:
        """Pose and every layer's attention for one person (`bbox` x, y, w, h; default the whole image).

        The attention is recorded in the un-flipped forward pass that makes the prediction; the flip
        test's mirrored pass only refines the keypoints. `mode` is a recording mode (full, mean, qk) or auto.
        """
        img = _image(image)
        box = bbox if bbox is not None else (0, 0, img.shape[1], img.shape[0])
        crops, x = make_crops(img, [box], self.input_size, heatmap_size(self.model))
        mode = self.auto_mode() if mode == "auto" else mode
        with record_attention(self.model, mode) as maps:
            heatmaps = self.model(x)
        if flip:
            pairs = getattr(self.model, "flip_pairs", FLIP_PAIRS)   # e.g. MPII's for a 16-keypoint model
            heatmaps = 0.5 * (heatmaps + flip_back(self.model(x.flip(-1)), pairs))
        kp, kp_crop = heatmaps_to_keypoints(heatmaps, crops)
        return Explanation(img, crops[0], x[0], heatmaps[0], kp[0], kp_crop[0], list(maps), self.layout,
                           self.name, self.keypoint_names)


def _attention_layers(model: nn.Module) -> list:
    from .record import attention_modules
    return attention_modules(model)


def _heads(model: nn.Module) -> int:
    mods = _attention_layers(model)
    return max((getattr(m, "nhead", getattr(m, "heads", getattr(m, "num_heads", 1))) for m in mods), default=1)


def _image(image) -> np.ndarray:
    if isinstance(image, (str, Path)):
        return read_image(image)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        return arr
    return to_rgb8(arr[..., ::-1] if arr.ndim == 3 and arr.shape[2] >= 3 else arr)


def load(name: str = "default", weights: str | Path | None = None, device: str = "cpu") -> PoseModel:
    """A zoo model (`tpexplain models` lists them) with its weights.

    `weights` is a checkpoint file; without it the zoo's checkpoint is used (bundled with
    the package, or downloaded into the cache by `tpexplain download`). A model with no
    checkpoint available is an error, except with weights="random" (seeded random weights, for tests).
    """
    model = zoo.build(name)
    if weights is None:
        path = zoo.checkpoint_path(name)
        if path is None:
            raise CheckpointError(zoo.missing_weights_message(name))
        load_checkpoint(model, path)
    elif str(weights) == "random":
        torch.manual_seed(0)
        model = zoo.build(name)
    else:
        load_checkpoint(model, weights)
    return PoseModel(model.to(device), name.strip().lower(), getattr(model, "keypoint_names", COCO_KEYPOINTS))
