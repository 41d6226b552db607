"""COCO person keypoints: names, aliases, flip pairs, skeleton and body parts."""
from __future__ import annotations

import difflib

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear",
    "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
    "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)
# The names COCO's annotation files use, same order.
COCO_LONG_NAMES: tuple[str, ...] = tuple(
    n.replace("l_", "left_").replace("r_", "right_") for n in COCO_KEYPOINTS
)
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)
# 0-based version of COCO's 1-based skeleton.
SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
# COCO's per-keypoint OKS sigmas.
OKS_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)
HEAD = (0, 1, 2, 3, 4)
PCK_ALPHA = 0.1  # PCK: a keypoint is correct within 0.1 x the longer side of its person's box
# Named body parts (used to hide parts in occlusion studies and to sort dependency mass).
BODY_PARTS: dict[str, tuple[int, ...]] = {
    "head": HEAD,
    "torso": (5, 6, 11, 12),
    "left_arm": (5, 7, 9), "right_arm": (6, 8, 10),
    "left_leg": (11, 13, 15), "right_leg": (12, 14, 16),
}


def flip_index(k: int) -> int:
    """Index of the mirror keypoint (itself for the nose)."""
    for a, b in FLIP_PAIRS:
        if k == a:
            return b
        if k == b:
            return a
    return k


def _normalise(name: str) -> str:
    n = name.strip().lower().replace("-", "_").replace(" ", "_")
    for long, short in (("left_", "l_"), ("right_", "r_")):
        if n.startswith(long):
            n = short + n[len(long):]
    return n


def keypoint_index(name: str | int, names: tuple[str, ...] = COCO_KEYPOINTS) -> int:
    """Index of a keypoint given as `l_ankle`, `left_ankle`, `LEFT_ANKLE` or an integer.

    An unknown name raises ValueError naming the close matches.
    """
    if isinstance(name, int) or (isinstance(name, str) and name.strip().isdigit()):
        i = int(name)
        if not 0 <= i < len(names):
            raise ValueError(f"keypoint index {i} out of range 0..{len(names) - 1}")
        return i
    n = _normalise(name)
    short = [_normalise(x) for x in names]
    if n in short:
        return short.index(n)
    close = difflib.get_close_matches(n, short, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(short)}"
    raise ValueError(f"unknown keypoint '{name}'{hint}")
