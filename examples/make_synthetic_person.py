"""Regenerate examples/synthetic_person.jpg: one front-facing person from tpexplain.training.synth.

Run from anywhere: `python examples/make_synthetic_person.py`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tpexplain.training.synth import render_image  # noqa: E402

SEED = 1003  # a single upright person, front view, all 17 keypoints visible


def main() -> Path:
    img, people = render_image(SEED, max_people=1)
    out = Path(__file__).resolve().with_name("synthetic_person.jpg")
    cv2.imwrite(str(out), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])  # RGB -> OpenCV's BGR
    p = people[0]
    print(f"{out}: {img.shape[1]}x{img.shape[0]}, view={p['view']}, pose={p['pose']}, "
          f"visible keypoints={int((p['keypoints'][:, 2] == 2).sum())}/17")
    return out


if __name__ == "__main__":
    main()
