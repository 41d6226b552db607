"""Procedural people with COCO keypoints, for training and testing pose estimators without COCO.

Each person is a small 3-D articulated body (joint angles within human limits, varied proportions)
seen from a yawed camera and drawn with OpenCV primitives in painter's order: far-side limbs, torso,
neck, then near-side limbs and the head sorted by depth. The head is ray-cast per pixel (an
ellipsoid with hair, eyes, brows, mouth, ears and a nose) so the facing direction, and with it which
side is the person's left, is visible as in a photograph. Every primitive is also drawn into an
integer "owner" map, and a keypoint is visible (v=2) only when the pixels around it are owned by
one of the body parts that meet at that joint after everything (other people, occluders) has been
drawn; otherwise it is labelled but occluded (v=1). Keypoints outside the image get v=0, x=y=0.

Modules: body (proportions, joint limits, 3-D skeleton), pose (pose and camera sampling), appearance
(skin, hair, clothes), canvas (2-D primitives), parts and head (drawing), person (one figure, its
depth order and keypoint visibility), backdrop (backgrounds, clutter), scene (composing an image:
render_image), dataset (make_dataset). Only numpy and cv2 are imported so the package is cheap in
data-loader worker processes.
"""
from __future__ import annotations

from .dataset import make_dataset
from .scene import render_image

# private names the tests use to check the owner map and the labels
from .body import _IDS_PER_PERSON, _KP_PARTS  # noqa: F401
from .pose import _POSES, _VIEWS  # noqa: F401
from .scene import _OCCLUDER_BASE, _render  # noqa: F401

__all__ = ["render_image", "make_dataset"]
