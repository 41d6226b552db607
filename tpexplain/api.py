"""The Python API that every front end (CLI, notebook, batch) stands on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import zoo
from .detect.people import Detection, find_people
from .zoo.checkpoint import CheckpointError, load_checkpoint
from .explanation import Explanation
from .inference import Poses, input_size, predict
from .io import as_rgb
from .keypoints import COCO_KEYPOINTS, KeypointSet, keypoint_set
from .record import attention_modules, record_attention

FULL_MAPS_BUDGET = 256 * 2**20  # bytes of per-head maps above which "auto" records q/k instead
RESCORE_MIN = 0.3     # a candidate whose confident keypoints average below this is not a person
MAX_CANDIDATES = 10   # re-scoring costs a forward pass per candidate: only the best few


class PoseModel:
    """A pose model with its name and token layout; `explain` runs it and records its attention."""

    def __init__(self, model: nn.Module, name: str = "model", keypoint_names: tuple[str, ...] = COCO_KEYPOINTS,
                 decode: str = "official"):
        self.model = model.eval()
        self.name = name
        self.keypoint_names = keypoint_names
        self.decode = decode    # what predict/explain use when not told: "official" or "guarded"
        self.weights: str | None = None   # "random", a checkpoint's file name, or None for the zoo's own (`load`)

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

    @property
    def keypoint_set(self) -> KeypointSet:
        """The keypoints this model predicts (names, mirror pairs, skeleton, body parts)."""
        return keypoint_set(self.keypoint_names)

    @property
    def num_layers(self) -> int:
        """Encoder layers whose attention is recorded."""
        return len(attention_modules(self.model))

    @property
    def num_heads(self) -> int:
        """Attention heads per layer (the largest, should layers differ)."""
        mods = attention_modules(self.model)
        return max((getattr(m, "nhead", getattr(m, "heads", getattr(m, "num_heads", 1))) for m in mods), default=1)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, image: np.ndarray | str | Path, boxes: list | None = None, flip: bool = True,
                decode: str | None = None) -> Poses:
        """Keypoints for each person box (x, y, w, h); the whole image when no box is given.

        `decode`: "official" (the family's own DARK post-processing) or "guarded"; default `self.decode`.
        """
        return predict(self.model, as_rgb(image), boxes, flip, decode or self.decode)

    def detect(self, image: np.ndarray | str | Path) -> list[Detection]:
        """The people in `image`, checked by this model: `detect_people(image, self)`."""
        return detect_people(image, self)

    def auto_mode(self, batch: int = 1) -> str:
        """The recording mode `explain` uses by default: full maps when they fit the budget, else q/k."""
        maps_bytes = batch * self.num_layers * self.num_heads * self.layout.num_tokens ** 2 * 4
        return "full" if maps_bytes <= FULL_MAPS_BUDGET else "qk"

    @torch.no_grad()
    def explain(self, image: np.ndarray | str | Path, bbox: tuple | None = None, flip: bool = True,
                mode: str = "auto", decode: str | None = None, query: str = "official") -> Explanation:
        """Pose and every layer's attention for one person (`bbox` x, y, w, h; default the whole image).

        This is `predict` run inside `record_attention`: one batched pass, on the model's device. The
        attention kept is the un-flipped image's; the flip test's mirrored half only refines the keypoints.
        `mode` is a recording mode (full, mean, qk) or auto. `decode` is as in `predict`; `query` is the
        explanation's default way to pick a keypoint's token: "official" (TransPose's visualisation) or
        "geometric" (docs/fidelity.md).
        """
        img = as_rgb(image)
        mode = self.auto_mode(batch=2 if flip else 1) if mode == "auto" else mode
        with record_attention(self.model, mode) as maps:
            poses = predict(self.model, img, None if bbox is None else [bbox], flip, decode or self.decode)
        # keep the un-flipped image's maps only (index 0 of the batch), on the CPU with the rest
        attention = [layer.select(0).to("cpu") for layer in maps]
        ex = Explanation(img, poses.crops[0], poses.inputs[0].cpu(), poses.heatmaps[0].cpu(), poses.keypoints[0],
                         poses.keypoints_crop[0], attention, self.layout, self.name, self.keypoint_names,
                         keypoints_heatmap=poses.keypoints_heatmap[0], query_convention=query)
        if bbox is not None:   # the person box, drawn in figures over the image
            ex.meta["box"] = [float(v) for v in bbox]
        ex.meta["weights"] = self.weights    # titles say "(random weights)"; side files name the checkpoint
        return ex


def load(name: str = "default", weights: str | Path | None = None, device: str = "cpu",
         decode: str = "official") -> PoseModel:
    """A zoo model (`tpexplain models` lists them) with its weights.

    `weights` is a checkpoint file; without it the zoo's checkpoint is used (bundled with
    the package, or downloaded into the cache by `tpexplain download`). A model with no
    checkpoint available is an error, except with weights="random" (seeded random weights, for tests).
    `decode` is the model's default keypoint decoding ("official" or "guarded").
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
    pm = PoseModel(model.to(device), name.strip().lower(), getattr(model, "keypoint_names", COCO_KEYPOINTS), decode)
    pm.weights = None if weights is None else "random" if str(weights) == "random" else Path(str(weights)).name
    return pm


def detect_people(image: np.ndarray | str | Path, pose_model: PoseModel | None = None) -> list[Detection]:
    """The people in a photo, best first, as `Detection`s (box x, y, w, h in image pixels, score, source).

    The candidates are OpenCV's (HOG people detector and Haar cascades, `tpexplain.detect.people`: no
    download). With a `pose_model`, each of the best MAX_CANDIDATES is re-scored by that model: its score
    becomes the mean confidence of the keypoints it finds there above 0.2 (the official person score without
    the box score), and candidates below RESCORE_MIN are dropped. Recall and precision are measured in
    docs/usage.md; expect many people to be missed.
    """
    img = as_rgb(image)
    found = find_people(img)[:MAX_CANDIDATES]
    if pose_model is None or not found:
        return found
    scores = pose_model.predict(img, [d.box for d in found], flip=False).keypoints[..., 2]
    checked = []
    for d, s in zip(found, scores):
        confident = s[s > 0.2]
        score = float(confident.mean()) if confident.size else 0.0
        if score >= RESCORE_MIN:
            checked.append(Detection(d.box, score, d.source))
    return sorted(checked, key=lambda d: -d.score)
