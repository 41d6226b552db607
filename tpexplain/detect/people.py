"""Finding people in a photo with the detectors OpenCV ships: HOG pedestrians and Haar cascades.

No download and no network: the HOG people detector (Dalal & Triggs' linear SVM) is compiled into OpenCV,
and the Haar cascades (upper body, frontal and profile faces) are XML files in the `opencv-contrib-python-headless`
wheel (`cv2.data.haarcascades`). Each source finds a different piece of a person, so each piece is grown into a
whole-person box by fixed body proportions, then the candidates are merged by non-maximum suppression.

This is a candidate detector, not a modern one: it finds upright people of a fair size and misses many others
(lying, tiny, seen from behind in a crowd). Its measured recall and precision are in docs/usage.md
(re-measured by bench/detect_recall.py). `tpexplain.api.detect_people` re-scores the candidates with the pose
model; commands ask for `--bbox` when nothing is found.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

WORK_SIDE = 512          # the image's longer side is resized to this before detection (speed, scale range)
BORDER = 0.15            # HOG searches the image with this share of its side replicated around it: its window
                         # needs a margin, and a person cut by the image edge (a crop of one person) has none
MIN_HEIGHT = 1 / 8       # people shorter than this share of the image side are not looked for (mostly noise)
NMS_IOU = 0.4            # candidates overlapping a better one by more than this are dropped
MIN_SCORE = 0.5          # candidates scoring below this (see SCORE_GAIN) are dropped
NESTED = 0.8             # a box with this share of it inside a larger one ...
COMPARABLE = 0.5         # ... scoring at least this fraction of its score is a piece of the same person

# Whole-person boxes from a detected piece, in units of that piece's width / height:
# (x offset, y offset, width, height) of the person box relative to the piece box, all times the piece's size.
# HOG's 64x128 window holds a person of about 40x96 px with margins (Dalal & Triggs, fig. 2); an upper-body
# (head and shoulders) box is about the top 30 % of a standing person; a face box is about 1/7 of the height
# and 1/3 of the shoulder width.
GROW = {
    "hog": (0.19, 0.09, 0.62, 0.82),
    "upperbody": (-0.05, -0.05, 1.1, 3.3),
    "face": (-1.0, -0.35, 3.0, 7.2),
    "profile": (-1.0, -0.35, 3.0, 7.2),
}
# Each source's raw score (HOG's SVM margin, a cascade's last-stage weight) times a gain, so that one
# threshold (MIN_SCORE) serves them all: the scores then span about 0..3 for each source.
SCORE_GAIN = {"hog": 2.0, "upperbody": 1.0, "face": 0.5, "profile": 0.5}
SCORE_SCALE = f"the detector's margin x a gain per source, about 0..3; >= {MIN_SCORE:g} kept"   # for messages


@dataclass(frozen=True)
class Detection:
    """One person found: box (x, y, w, h) in image pixels, score (higher is surer) and the piece that found it."""

    box: tuple[float, float, float, float]
    score: float
    source: str          # "hog", "upperbody", "face" or "profile"

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def label(self) -> str:
        """'x,y,w,h' rounded to pixels, as `--bbox` takes it."""
        return ",".join(f"{v:.0f}" for v in self.box)


class DetectorUnavailable(RuntimeError):
    """The installed OpenCV lacks the HOG detector or the Haar cascades (opencv-python-headless 5 without contrib)."""


@lru_cache(maxsize=1)
def _detectors():
    """HOG people detector and the cascades, built once per process."""
    if not hasattr(cv2, "HOGDescriptor") or not hasattr(cv2, "CascadeClassifier"):
        raise DetectorUnavailable(
            f"person detection needs OpenCV's HOG and Haar cascades, missing from this OpenCV {cv2.__version__} "
            "(install opencv-contrib-python-headless), or give --bbox X,Y,W,H")
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    cascades = {}
    for source, name in (("upperbody", "upperbody"), ("face", "frontalface_default"), ("profile", "profileface")):
        cascade = cv2.CascadeClassifier(f"{folder}haarcascade_{name}.xml")
        if cascade.empty():
            raise DetectorUnavailable(f"OpenCV's Haar cascade '{name}' is missing from {folder or 'cv2.data'} "
                                      "(install opencv-contrib-python-headless), or give --bbox X,Y,W,H")
        cascades[source] = cascade
    return hog, cascades


def grow(piece: tuple[float, float, float, float], source: str) -> tuple[float, float, float, float]:
    """The whole-person box implied by a detected piece (see GROW)."""
    x, y, w, h = piece
    dx, dy, gw, gh = GROW[source]
    if source in ("face", "profile"):
        h = w                   # face boxes are square; the person's height is in face widths
    return x + dx * w, y + dy * h, gw * w, gh * h


def clip(box, width: int, height: int) -> tuple[float, float, float, float] | None:
    """`box` cut to the image; None when less than a pixel of it is inside."""
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    x1, y1 = min(box[0] + box[2], float(width)), min(box[1] + box[3], float(height))
    return (x0, y0, x1 - x0, y1 - y0) if x1 - x0 >= 1 and y1 - y0 >= 1 else None


def iou(a, b) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def nms(detections: list[Detection], threshold: float = NMS_IOU) -> list[Detection]:
    """Best-first non-maximum suppression: keep a detection unless a kept one overlaps it by more than
    `threshold` IoU, or contains most of it (a face-grown box inside a HOG box is the same person). Then a
    kept box lying mostly inside a larger kept one that scores comparably (NESTED, COMPARABLE) is dropped
    too: HOG finds a torso-sized window inside a whole person, often scoring higher."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if all(iou(d.box, k.box) <= threshold and _inside(d.box, k.box) < NESTED for k in kept):
            kept.append(d)
    return [d for d in kept if not any(k.area > d.area and _inside(d.box, k.box) >= NESTED
                                       and k.score >= COMPARABLE * d.score for k in kept)]


def _inside(a, b) -> float:
    """The share of box a that lies inside box b."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / max(a[2] * a[3], 1e-9)


def candidates(image: np.ndarray) -> list[Detection]:
    """Every piece each source finds, grown to a person box and clipped to the image, before any merging.

    `image` is RGB (or grey) uint8, in original pixels; boxes come back in the same pixels.
    """
    hog, cascades = _detectors()
    img = np.asarray(image)
    ih, iw = img.shape[:2]
    s = WORK_SIDE / max(ih, iw)
    work = cv2.resize(img, (max(round(iw * s), 1), max(round(ih * s), 1)), interpolation=cv2.INTER_AREA
                      if s < 1 else cv2.INTER_LINEAR)
    gray = work if work.ndim == 2 else cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    gray = cv2.equalizeHist(gray)
    found: list[Detection] = []

    def add(boxes, raws, source, scale):
        for b, raw in zip(boxes, raws):
            box = clip(grow(tuple(float(v) / scale for v in b), source), iw, ih)
            if box is not None:
                found.append(Detection(box, float(raw) * SCORE_GAIN[source], source))

    pad = round(BORDER * max(work.shape[:2]))
    framed = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    boxes, weights = hog.detectMultiScale(framed, winStride=(8, 8), padding=(16, 16), scale=1.05)
    tall = [((x - pad, y - pad, w, h), raw) for (x, y, w, h), raw in zip(np.reshape(boxes, (-1, 4)), np.ravel(weights))
            if h * GROW["hog"][3] >= MIN_HEIGHT * max(work.shape[:2])]
    add([b for b, _ in tall], [raw for _, raw in tall], "hog", s)
    min_side = max(24, round(min(gray.shape) / 20))     # cascades below ~1/20 of the image are mostly noise
    for source, cascade in cascades.items():
        boxes, _, weights = cascade.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=4,
                                                      minSize=(min_side, min_side), outputRejectLevels=True)
        add(boxes, np.ravel(weights), source, s)
    return found


def find_people(image: np.ndarray, min_score: float = MIN_SCORE) -> list[Detection]:
    """The people in `image` (RGB uint8, original pixels), best first: candidates above `min_score`, merged by NMS."""
    return nms([d for d in candidates(image) if d.score >= min_score])
