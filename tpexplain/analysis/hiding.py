"""Hiding part of an image: region masks, body-part masks from a predicted pose, and the fills.

Fills: "mean" paints the image's mean colour (per channel), "blur" a strong Gaussian blur of the image
(sigma a quarter of the hidden region's shorter side, at least 2 px), "noise" Gaussian noise with the
image's per-channel mean and standard deviation (seeded).

Body parts come from the model's keypoint set (`KeypointSet.body_parts`: head, torso, left_arm, right_arm,
left_leg, right_leg for COCO and MPII); any keypoint name hides that joint alone.
"""
from __future__ import annotations

import difflib

import cv2
import numpy as np

from ..explanation import Explanation
from ..keypoints import KeypointSet
from .depth import default_radius
from .regions import torso_outline

FILLS = ("mean", "blur", "noise")
PART_ALIASES = {"l_arm": "left_arm", "r_arm": "right_arm", "l_leg": "left_leg", "r_leg": "right_leg"}


def check_fill(fill: str) -> str:
    """`fill` if it is one of FILLS, else a ValueError naming them."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill '{fill}'; use one of {', '.join(FILLS)}")
    return fill


def region_mask(shape: tuple[int, ...], region: tuple | np.ndarray) -> np.ndarray:
    """A boolean (H, W) mask from a box (x, y, w, h) in pixels (partly outside is clipped) or a mask."""
    h, w = shape[:2]
    if isinstance(region, np.ndarray) and region.ndim == 2:
        if region.shape != (h, w):
            raise ValueError(f"region mask is {region.shape[1]}x{region.shape[0]}, the image is {w}x{h}")
        mask = region.astype(bool)
    else:
        try:
            x, y, rw, rh = (float(v) for v in region)
        except (TypeError, ValueError):
            raise ValueError(f"bad region {region!r}: expected x,y,w,h or a boolean mask") from None
        if not all(np.isfinite((x, y, rw, rh))) or rw <= 0 or rh <= 0:
            raise ValueError(f"bad region {region!r}: width and height must be positive")
        mask = np.zeros((h, w), bool)
        mask[max(int(np.floor(y)), 0):max(int(np.ceil(y + rh)), 0),
             max(int(np.floor(x)), 0):max(int(np.ceil(x + rw)), 0)] = True
    if not mask.any():
        raise ValueError(f"region {describe_region(region)} covers no pixel of the {w}x{h} image")
    return mask


def describe_region(region: tuple | np.ndarray) -> str:
    """"x,y,w,h" for a box, "mask" for a mask: how results name what was hidden."""
    return "mask" if isinstance(region, np.ndarray) and region.ndim == 2 else ",".join(f"{v:g}" for v in region)


def fill_image(image: np.ndarray, fill: str, mask: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """What the hidden pixels become: a float32 image the size of `image` (see the module docstring)."""
    check_fill(fill)
    img = np.asarray(image, dtype=np.float32)
    flat = img.reshape(-1, img.shape[-1]) if img.ndim == 3 else img.reshape(-1, 1)
    if fill == "mean":
        return np.broadcast_to(flat.mean(0).reshape((1, 1, -1)) if img.ndim == 3 else flat.mean(),
                               img.shape).astype(np.float32)
    if fill == "noise":
        rng = np.random.default_rng(seed)
        mean = flat.mean(0).reshape((1, 1, -1)) if img.ndim == 3 else flat.mean()
        std = flat.std(0).reshape((1, 1, -1)) if img.ndim == 3 else flat.std()
        return (mean + std * rng.standard_normal(img.shape)).astype(np.float32)
    side = min(img.shape[:2])
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        side = min(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    sigma = max(2.0, side / 4.0)
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def hide(image: np.ndarray, region: tuple | np.ndarray, fill: str = "mean", seed: int = 0) -> np.ndarray:
    """A copy of `image` with `region` (x, y, w, h in pixels, or a boolean mask) hidden by `fill`."""
    check_fill(fill)
    img = np.asarray(image)
    mask = region_mask(img.shape, region)
    values = fill_image(img, fill, mask, seed)
    out = img.copy()
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    out[mask] = values[mask].astype(img.dtype)
    return out


# ---------------------------------------------------------------------------------------------------
# Body parts

def part_joints(part: str, keypoints: KeypointSet) -> tuple[str, tuple[int, ...]]:
    """(canonical name, joint indices) of a body part of `keypoints` (left_arm, l_arm, ...) or of one keypoint.

    An unknown name raises ValueError naming the close matches.
    """
    key = str(part).strip().lower().replace("-", "_").replace(" ", "_")
    key = PART_ALIASES.get(key, key)
    if key in keypoints.body_parts:
        return key, tuple(keypoints.body_parts[key])
    try:
        k = keypoints.index(key)
        return keypoints.names[k], (k,)
    except ValueError:
        pass
    parts = list(keypoints.body_parts)
    close = difflib.get_close_matches(key, parts + list(keypoints.names), n=3, cutoff=0.5)
    if close:
        hint = f"did you mean {', '.join(close)}?"
    elif parts:
        hint = f"use a keypoint name or one of {', '.join(parts)}"
    else:
        hint = f"this model's keypoints have no named body parts; use a keypoint name ({', '.join(keypoints.names)})"
    raise ValueError(f"unknown body part '{part}'; {hint}")


def part_region(ex: Explanation, part: str, at: str = "pred") -> np.ndarray:
    """Image-space boolean mask of a keypoint (a disc) or a body part of the model's keypoint set, from the
    predicted pose (`at` "pred") or the ground truth (`at` "gt": `ex.ground_truth`, its labelled joints only).

    Discs around the part's joints and thick lines along its bones, radius `default_radius` (a tenth of the
    person's size) mapped to image pixels; the torso is the filled shoulders-hips quadrilateral, the head
    the filled hull of the head keypoints, each grown by the same radius.
    """
    ks = ex.keypoint_set
    name, joints = part_joints(part, ks)
    lin = ex.crop.from_crop[:, :2]
    r = default_radius(ex) * float(np.sqrt(abs(np.linalg.det(lin))))   # crop px → image px
    ih, iw = ex.image.shape[:2]
    kp = np.asarray(ex.keypoints[:, :2], dtype=np.float64)
    if at == "gt":
        kp, joints = _ground_truth_joints(ex, name, joints)
    elif at != "pred":
        raise ValueError(f"unknown at '{at}'; use pred or gt")
    canvas = np.zeros((ih, iw), np.uint8)
    rr = max(int(round(r)), 1)
    pts = [tuple(int(round(v)) for v in kp[j]) for j in joints]
    for p in pts:
        cv2.circle(canvas, p, rr, 1, thickness=-1)
    bones = set(ks.skeleton)
    for a in joints:
        for b in joints:
            if a < b and ((a, b) in bones or (b, a) in bones):
                cv2.line(canvas, pts[joints.index(a)], pts[joints.index(b)], 1, thickness=2 * rr)
    outline = torso_outline(ks) if name == "torso" else ks.head if name == "head" else ()
    if at == "gt":     # the outline of the labelled joints only; a hull needs three
        outline = [j for j in outline if j in joints]
        outline = outline if len(outline) >= 3 else ()
    if outline:
        hull = cv2.convexHull(kp[list(outline)].astype(np.float32)).astype(np.int32)
        cv2.fillConvexPoly(canvas, hull, 1)
        cv2.polylines(canvas, [hull], True, 1, thickness=2 * rr)
    mask = canvas.astype(bool)
    if not mask.any():
        raise ValueError(f"body part '{part}' lies outside the image")
    return mask


def _ground_truth_joints(ex: Explanation, name: str, joints: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """(K, 2) positions with the ground truth's labelled joints, and which of `joints` are labelled; a one-line
    ValueError without ground truth or when none of them is labelled."""
    if len(joints) == 1:
        ex.ground_truth_joint(joints[0])            # its own messages: no ground truth, joint not labelled
    if ex.ground_truth is None:
        raise ValueError("no ground truth for this person (give annotations, e.g. --coco ANN, or use --at pred)")
    gt = np.asarray(ex.ground_truth, dtype=np.float64)
    labelled = tuple(j for j in joints if gt.shape[0] == len(ex.keypoint_names) and gt[j, 2] > 0)
    if not labelled:
        raise ValueError(f"no joint of {name} is labelled in the ground truth (use --at pred)")
    kp = np.asarray(ex.keypoints[:, :2], dtype=np.float64).copy()
    kp[list(labelled)] = gt[list(labelled), :2]
    return kp, labelled
