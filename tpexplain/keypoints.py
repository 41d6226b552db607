"""Keypoint sets (COCO's 17, MPII's 16): names, aliases, flip pairs, skeleton and body parts."""
from __future__ import annotations

import difflib
from dataclasses import dataclass

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


def flip_index(k: int, flip_pairs: tuple[tuple[int, int], ...] = FLIP_PAIRS) -> int:
    """Index of the mirror keypoint (itself for the nose)."""
    for a, b in flip_pairs:
        if k == a:
            return b
        if k == b:
            return a
    return k


def name_key(name: str) -> str:
    """A keypoint name compared across files and models: lower case, `left_`/`right_` as `l_`/`r_`."""
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
    n = name_key(name)
    short = [name_key(x) for x in names]
    if n in short:
        return short.index(n)
    close = difflib.get_close_matches(n, short, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(short)}"
    raise ValueError(f"unknown keypoint '{name}'{hint}")


@dataclass(frozen=True)
class KeypointSet:
    """What a model predicts: keypoint names in output order, mirror pairs, the skeleton drawn, body parts."""

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    head: tuple[int, ...]
    body_parts: dict[str, tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str | int) -> int:
        """Index of a keypoint by name (aliases as `keypoint_index`) or integer."""
        return keypoint_index(name, self.names)

    def flip_index(self, k: int) -> int:
        """Index of the mirror keypoint (itself for a keypoint on the midline)."""
        return flip_index(k, self.flip_pairs)

    def parse(self, text: str) -> list[str]:
        """'all' or a comma-separated list of names → canonical names; unknown names fail with suggestions."""
        if text.strip().lower() == "all":
            return list(self.names)
        return [self.names[self.index(t)] for t in str(text).split(",") if t.strip()]


COCO = KeypointSet("coco", COCO_KEYPOINTS, FLIP_PAIRS, SKELETON, HEAD, BODY_PARTS)

# MPII's 16 joints in the dataset's order (TokenPose-L/D6 is trained on MPII).
MPII_KEYPOINTS: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)
MPII = KeypointSet(
    "mpii", MPII_KEYPOINTS,
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=((0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
              (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15)),
    head=(8, 9),
    body_parts={"head": (8, 9), "torso": (2, 3, 6, 7, 12, 13), "left_arm": (13, 14, 15),
                "right_arm": (12, 11, 10), "left_leg": (3, 4, 5), "right_leg": (2, 1, 0)},
)
KEYPOINT_SETS: dict[str, KeypointSet] = {"coco": COCO, "mpii": MPII}


def keypoint_set(names: tuple[str, ...] | list[str]) -> KeypointSet:
    """The known set with exactly these names; otherwise a set of those names with no skeleton or pairs."""
    names = tuple(names)
    for ks in KEYPOINT_SETS.values():
        if ks.names == names:
            return ks
    return KeypointSet("custom", names, (), (), (), {})


def keypoint_order(file_names: list[str] | None, k: int, model_names: tuple[str, ...], where: str) -> list[int]:
    """For each of the model's keypoints, its index in the file's keypoints (-1: the file has no such joint).

    Names are matched by `keypoints.name_key` (left_/l_ alike); a file without keypoint names must have the
    model's count. A file sharing no joint with the model is refused in one line."""
    if not file_names:
        if k != len(model_names):
            raise ValueError(f"{where}: its persons have {k} keypoints and its categories name none; the model "
                             f"predicts {len(model_names)} (COCO's {', '.join(model_names)})")
        return list(range(k))
    keys = [name_key(n) for n in file_names]
    order = [keys.index(name_key(n)) if name_key(n) in keys else -1 for n in model_names]
    if all(i < 0 for i in order):
        raise ValueError(f"{where}: none of its keypoints ({', '.join(file_names)}) is one the model predicts "
                         f"({', '.join(model_names)})")
    return order
