"""The findings report: the TransPose paper's claims about its attention, measured over many people.

    f = findings(load("default"), "person_keypoints.json", "images/", "report/")
    f.verdicts()          # {"activation_max_on_keypoint": "holds", ...}

Every person is cropped with its ground-truth box; the queries are the model's PREDICTED keypoints (the
paper's activation-maximum view), and only keypoints labelled in the ground truth (v > 0) are queried.
Accuracy uses the ground-truth keypoints and visibility flags (v=2 visible, v=1 labelled but occluded).
Body regions (own joint, mirror joint, neighbours, head, rest of the body) are drawn around the
ground-truth joints where they are labelled and around the predicted ones elsewhere, so "on the head"
means on the real head even when the prediction is off.

Each claim has one statistic and one criterion, both fixed in this module (the constants below) before
any result is seen; the verdict is "holds", "does not hold", or "not measured" when the set has too few
cases for the statistic. The report says which, and never adjusts a criterion to a model.

Output (written into a temporary folder beside `out_dir`, then moved into place, so an interrupted run
leaves no half-written report): report.md, report.html (figures embedded), figures/*.png, findings.json.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import cv2
import matplotlib.pyplot as plt
import numpy as np

from .. import figures
from ..api import PoseModel
from ..explanation import Explanation
from ..io import read_image
from ..keypoints import COCO_KEYPOINTS, HEAD, PCK_ALPHA, flip_index
from ..transforms import apply_affine
from .depth import layer_metrics, token_centers
from .occlusion import occlusion_study
from .regions import REGIONS, region_masks
from .sanity import attention_occlusion_agreement, model_randomisation

# ---------------------------------------------------------------------------------------------------
# Criteria: fixed here, stated in the report before each verdict. Never tuned to a model's results.

PCK_MIN = 0.5              # most peaks land on the keypoint (PCK@0.1)
CONCENTRATION_MIN = 0.5    # at least half of the off-person mass a uniform map would have is moved onto the person
HEAD_SHARE_MIN = 0.5       # "mostly": at least half the mass on the head
SRI_MIN = 1.1              # materially more attention on the mirror joint than distance alone gives (the same
                           # 10% margin as MIN_RELATIVE_FALL; a random-weights model scores 1.03-1.06)
LIMB_TYPES_MIN = 0.75      # ... for at least 6 of the 8 limb joint types
SIGN_TEST_P = 0.05         # one-sided sign test level
MIN_RELATIVE_FALL = 0.1    # "falls" means by at least a tenth: a consistent but negligible drift is not finer attention
OCCLUDED_PCK_MIN = 0.5     # most occluded keypoints are still found
SPECIFIC_R_MAX = 0.9       # the mean map explains less than 81% of an individual map's variance
COMMON_FRACTION_MIN = 0.75  # 3 in 4 maps resemble their own type's mean more than the other types' means
RANDOMISED_RHO_MAX = 0.5   # after re-initialising the encoder, maps keep less than moderate rank agreement
AGREEMENT_RHO_MIN = 0.3    # attention and occlusion sensitivity agree at least moderately

MIN_KEYPOINTS = 10         # fewer cases than this: "not measured"
MIN_PEOPLE_SIGN = 5        # a one-sided sign test cannot reach p < 0.05 with fewer
MIN_PER_TYPE = 3
LIMB_JOINTS = (7, 8, 9, 10, 13, 14, 15, 16)   # elbows, wrists, knees, ankles
BODY_CUES = ("symmetric", "adjacent", "head", "person")
HOLDS, FAILS, UNMEASURED = "holds", "does not hold", "not measured"


# ---------------------------------------------------------------------------------------------------
# Data

@dataclass
class Person:
    """One annotated person: where the image is, its ground-truth box and keypoints (17, 3) [x, y, v]."""

    image: Path
    image_id: int
    annotation_id: int
    bbox: tuple[float, float, float, float]
    keypoints: np.ndarray


def read_people(annotations: str | Path, images: str | Path, max_people: int | None = None) -> list[Person]:
    """People with labelled keypoints in a COCO person-keypoints file (crowd and tiny boxes left out), in
    file order, at most `max_people`."""
    ann_path, image_dir = Path(annotations), Path(images)
    if not ann_path.is_file():
        raise ValueError(f"annotation file not found: {ann_path}")
    if not image_dir.is_dir():
        raise ValueError(f"image folder not found: {image_dir}")
    try:
        data = json.loads(ann_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{ann_path} is not a JSON file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{ann_path} is not a COCO annotation file (needs 'images' and 'annotations' lists)")
    files = {im.get("id"): im.get("file_name") for im in data["images"] if isinstance(im, dict)}
    people = []
    for a in data["annotations"]:
        try:
            kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
            box = tuple(float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError):
            continue
        if a.get("iscrowd", 0) or len(kp) != len(COCO_KEYPOINTS) or not (kp[:, 2] > 0).any():
            continue
        if len(box) != 4 or box[2] <= 1 or box[3] <= 1 or files.get(a.get("image_id")) is None:
            continue
        people.append(Person(image_dir / files[a["image_id"]], int(a["image_id"]), int(a.get("id", len(people))),
                             box, kp))
        if max_people is not None and len(people) >= max_people:
            break
    if not people:
        raise ValueError(f"no person with keypoints in {ann_path}")
    return people


# ---------------------------------------------------------------------------------------------------
# Claims

@dataclass
class Claim:
    """One measured claim: its statistic, the fixed criterion, the verdict, and the numbers behind it."""

    id: str
    section: str          # which of the paper's claims (or sanity check) it belongs to
    statement: str
    statistic: str        # definition
    criterion: str
    value: float | None
    verdict: str
    figure: str | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"section": self.section, "statement": self.statement,
                "statistic": {"definition": self.statistic, "value": _num(self.value)},
                "criterion": self.criterion, "verdict": self.verdict, "figure": self.figure,
                "details": _jsonable(self.details)}


@dataclass
class Findings:
    """All claims, the numbers behind them, and where the report was written."""

    claims: list[Claim]
    numbers: dict
    meta: dict
    out_dir: Path | None = None

    def verdicts(self) -> dict[str, str]:
        return {c.id: c.verdict for c in self.claims}

    def claim(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise KeyError(f"no claim '{claim_id}' (known: {', '.join(c.id for c in self.claims)})")

    def to_dict(self) -> dict:
        return {"tpexplain_findings": 1, "meta": _jsonable(self.meta),
                "claims": {c.id: c.to_dict() for c in self.claims}, "numbers": _jsonable(self.numbers)}


# ---------------------------------------------------------------------------------------------------
# Measuring

@dataclass
class _Measurements:
    queries: list[dict] = field(default_factory=list)           # one per (person, labelled keypoint)
    maps: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)   # k → person → last-layer map
    query_crop: dict[int, list] = field(default_factory=dict)   # k → predicted crop points
    crop_sum: np.ndarray | None = None
    analysed: list[int] = field(default_factory=list)           # indices into people
    skipped: list[dict] = field(default_factory=list)
    example: Explanation | None = None
    num_layers: int = 0


def _gt_explanation(ex: Explanation, gt: np.ndarray) -> Explanation:
    """`ex` with its pose replaced by the ground truth where labelled (regions only; the maps stay)."""
    labelled = gt[:, 2] > 0
    crop = np.where(labelled[:, None], apply_affine(gt[:, :2], ex.crop.to_crop), ex.keypoints_crop)
    image = ex.keypoints.copy()
    image[labelled, :2] = gt[labelled, :2]
    return dataclasses.replace(ex, keypoints=image, keypoints_crop=crop.astype(np.float32))


def _share(v: np.ndarray, mask: np.ndarray) -> float:
    return float(v[mask].sum())


def _measure_person(ex: Explanation, person: Person, index: int, m: _Measurements) -> None:
    gt = person.keypoints
    size = max(person.bbox[2], person.bbox[3])
    dist = np.hypot(*(ex.keypoints[:, :2] - gt[:, :2]).T)
    ex_gt = _gt_explanation(ex, gt)
    # the head area is the union of the discs around the head joints; for the nose, regions.py splits
    # exactly that union into own (nose), adjacent (eyes) and head (ears)
    nose = region_masks(ex_gt, 0)
    head_mask = nose["own"] | nose["adjacent"] | nose["head"]
    centres = token_centers(ex.layout)
    bin_px = float(max(ex.layout.stride))
    for k in np.flatnonzero(gt[:, 2] > 0):
        k = int(k)
        v = np.clip(ex.dependency(k).values.astype(np.float64), 0, None)
        v = v / v.sum() if v.sum() > 0 else np.full(v.shape, 1.0 / v.size)
        masks = region_masks(ex_gt, k)
        masses = {r: _share(v, masks[r]) for r in REGIONS}
        areas = {r: float(masks[r].mean()) for r in REGIONS}
        rows = layer_metrics(ex, k)
        person_mass, person_area = 1 - masses["background"], 1 - areas["background"]
        query = ex.keypoints_crop[k]
        sym = _distance_matched(v, query, centres, masks["symmetric"], masks["own"] | masks["symmetric"], bin_px)
        adj = _distance_matched(v, query, centres, masks["adjacent"],
                                masks["own"] | masks["symmetric"] | masks["adjacent"], bin_px)
        m.queries.append({
            "person": index, "image_id": person.image_id, "annotation_id": person.annotation_id,
            "keypoint": COCO_KEYPOINTS[k], "k": k, "v": int(gt[k, 2]),
            "error_norm": float(dist[k] / size), "hit": bool(dist[k] <= PCK_ALPHA * size),
            "masses": masses, "areas": areas,
            "head_share": _share(v, head_mask), "head_area": float(head_mask.mean()),
            "symmetric_observed": sym[0], "symmetric_expected": sym[1],
            "adjacent_observed": adj[0], "adjacent_expected": adj[1],
            "concentration": (person_mass - person_area) / (1 - person_area) if person_area < 1 else None,
            "entropy": [r["entropy"] for r in rows], "distance_body": [r["distance_body"] for r in rows],
            "distance_px": [r["distance_px"] for r in rows]})
        m.maps.setdefault(k, {})[index] = v.astype(np.float32)
        m.query_crop.setdefault(k, []).append(tuple(float(c) for c in ex.keypoints_crop[k]))
    crop = ex.crop_image.astype(np.float64)
    m.crop_sum = crop if m.crop_sum is None else m.crop_sum + crop
    m.num_layers = ex.num_layers


def _distance_matched(v: np.ndarray, query, centres: np.ndarray, target: np.ndarray, exclude: np.ndarray,
                      bin_px: float) -> tuple[float, float]:
    """(observed, expected) mass on `target` tokens; expected gives each target token the mean mass of the
    tokens outside `exclude` at the same distance from the query (bins `bin_px` wide). Attention that only
    decays with distance scores observed ≈ expected, whatever lies near the query."""
    d = np.hypot(centres[..., 0] - float(query[0]), centres[..., 1] - float(query[1]))
    b = (d / bin_px).astype(int)
    comp = ~exclude
    sums = np.bincount(b[comp], weights=v[comp], minlength=b.max() + 1)
    counts = np.bincount(b[comp], minlength=b.max() + 1)
    ok = target & (counts[b] > 0)       # a target token with no comparison at its distance cannot be matched
    if not ok.any():
        return 0.0, 0.0
    return float(v[ok].sum()), float((sums[b[ok]] / counts[b[ok]]).sum())


def _load_image(path: Path, cache: dict) -> np.ndarray:
    if path not in cache:
        cache.clear()   # people come in file order, grouped by image: keep one image at a time
        cache[path] = read_image(path)
    return cache[path]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------------
# Statistics

def sign_test(diffs) -> tuple[int, int, float]:
    """(negatives, non-zero cases, one-sided p) for "the differences are mostly negative": P(X ≥ negatives)
    with X ~ Binomial(n, 1/2); zero differences are dropped."""
    d = [x for x in diffs if x is not None and np.isfinite(x) and x != 0]
    n, neg = len(d), sum(1 for x in d if x < 0)
    if n == 0:
        return 0, 0, float("nan")
    return neg, n, float(Fraction(sum(math.comb(n, i) for i in range(neg, n + 1)), 2 ** n))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1) - a.mean(), b.reshape(-1) - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def _median(xs) -> float:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.median(xs)) if xs else float("nan")


def _verdict(measured: bool, ok: bool) -> str:
    return UNMEASURED if not measured else (HOLDS if ok else FAILS)


def _claim_activation_max(q: list[dict]) -> Claim:
    vis = [r for r in q if r["v"] == 2]
    value = _mean([float(r["hit"]) for r in vis])
    per_type = {COCO_KEYPOINTS[k]: _mean([float(r["hit"]) for r in vis if r["k"] == k]) for k in range(17)}
    return Claim(
        "activation_max_on_keypoint", "1. The activation maximum is the keypoint",
        "Heatmap peaks land on the ground-truth keypoints.",
        f"PCK@{PCK_ALPHA:g} over visible keypoints (v=2): the share of predicted peaks within "
        f"{PCK_ALPHA:g} × the longer side of the person's ground-truth box from the ground-truth keypoint.",
        f"PCK@{PCK_ALPHA:g} ≥ {PCK_MIN:g} (most peaks on the keypoint); not measured with fewer than "
        f"{MIN_KEYPOINTS} visible keypoints.",
        value, _verdict(len(vis) >= MIN_KEYPOINTS, value >= PCK_MIN), "figures/activation_max.png",
        {"num_visible": len(vis), "pck_visible_by_type": per_type,
         "median_error_body": _median([r["error_norm"] for r in vis])})


def _claim_person(q: list[dict]) -> Claim:
    c = [r["concentration"] for r in q if r["concentration"] is not None]
    value = _median(c)
    return Claim(
        "dependency_on_person", "1. The activation maximum is the keypoint",
        "The last layer's dependency at the predicted peak concentrates on the person.",
        "Concentration index (m − a) / (1 − a) of the last layer's dependency map at each predicted keypoint, "
        "median over queries: m is the map's mass on the person (every body region: within r of a joint or "
        "bone, or inside the torso; r = a tenth of the person's size), a the person's share of the token grid "
        "(what a uniform map would put there). 0 = no more than uniform, 1 = all mass on the person.",
        f"median concentration ≥ {CONCENTRATION_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} queries.",
        value, _verdict(len(c) >= MIN_KEYPOINTS, value >= CONCENTRATION_MIN), "figures/dependency_on_person.png",
        {"num_queries": len(c), "mean_person_mass": _mean([1 - r["masses"]["background"] for r in q]),
         "mean_person_area": _mean([1 - r["areas"]["background"] for r in q]),
         "mean_concentration": _mean(c)})


def _claim_head(q: list[dict]) -> Claim:
    head = [r for r in q if r["k"] in HEAD]
    value = _mean([r["head_share"] for r in head])
    return Claim(
        "head_joints_on_head", "2. Dependencies differ by keypoint type",
        "Head joints (nose, eyes, ears) lean mostly on the head.",
        "Mean share of the last layer's dependency mass on the head (tokens within r of any labelled head "
        "joint) for queries at head joints.",
        f"mean head share ≥ {HEAD_SHARE_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} head queries.",
        value, _verdict(len(head) >= MIN_KEYPOINTS, value >= HEAD_SHARE_MIN), "figures/regions_by_type.png",
        {"num_queries": len(head), "mean_head_area": _mean([r["head_area"] for r in head]),
         "head_share_by_type": {COCO_KEYPOINTS[k]: _mean([r["head_share"] for r in q if r["k"] == k])
                                for k in range(17)}})


def _reliance(rows: list[dict], region: str) -> float:
    """Observed / distance-matched expected mass on `region`, pooled over `rows`."""
    observed = sum(r[f"{region}_observed"] for r in rows)
    expected = sum(r[f"{region}_expected"] for r in rows)
    return observed / expected if expected > 0 else float("nan")


def _claim_symmetric(q: list[dict]) -> Claim:
    sri, adj, counts = {}, {}, {}
    for k in range(17):
        rows = [r for r in q if r["k"] == k]
        counts[COCO_KEYPOINTS[k]] = len(rows)
        if len(rows) >= MIN_PER_TYPE:
            if flip_index(k) != k:
                sri[COCO_KEYPOINTS[k]] = _reliance(rows, "symmetric")
            adj[COCO_KEYPOINTS[k]] = _reliance(rows, "adjacent")
    limbs = [sri[COCO_KEYPOINTS[k]] for k in LIMB_JOINTS
             if COCO_KEYPOINTS[k] in sri and np.isfinite(sri[COCO_KEYPOINTS[k]])]
    value = float(np.mean([s > SRI_MIN for s in limbs])) if limbs else float("nan")
    return Claim(
        "limb_joints_use_symmetric_joint", "2. Dependencies differ by keypoint type",
        "Wrists, elbows, knees and ankles also lean on their symmetric joint (and neighbours).",
        "Symmetric-reliance index per keypoint type: the last layer's dependency mass on the mirror joint's "
        "region (tokens within r of it) divided by the mass expected there from the map's distance profile "
        "(each such token is given the mean mass of the other tokens, outside the joint's and the mirror's "
        "regions, at the same distance from the query, in bins one token stride wide), pooled over the type's "
        "queries. > 1: the mirror joint gets more attention than other places as far from the query; a map "
        "that merely decays with distance scores 1 however close the mirror joint is. The neighbours' index "
        "is the same for the adjacent joints. The statistic is the share of the 8 limb types (elbows, wrists, "
        "knees, ankles) whose symmetric-reliance index exceeds 1.",
        f"share of limb types with index > {SRI_MIN:g} ≥ {LIMB_TYPES_MIN:g} (6 of 8); a type needs "
        f"{MIN_PER_TYPE} queries; not measured when no limb type has them.",
        value, _verdict(bool(limbs), value >= LIMB_TYPES_MIN), "figures/symmetric_reliance.png",
        {"symmetric_reliance_index": sri, "adjacent_reliance_index": adj, "queries_by_type": counts,
         "limb_types_measured": len(limbs)})


def _depth_claim(q: list[dict], key: str, label: str, claim_id: str, num_layers: int) -> Claim:
    by_person: dict[int, list[float]] = {}
    for r in q:
        by_person.setdefault(r["person"], []).append(r[key][-1] - r[key][0])
    diffs = [float(np.mean(v)) for v in by_person.values()]
    neg, n, p = sign_test(diffs)
    value = neg / n if n else float("nan")
    measured = num_layers >= 2 and n >= MIN_PEOPLE_SIGN
    per_layer = [_mean([r[key][i] for r in q]) for i in range(num_layers)]
    fall = (per_layer[0] - per_layer[-1]) / per_layer[0] if num_layers and per_layer[0] > 0 else float("nan")
    return Claim(
        claim_id, "3. Attention becomes finer with depth",
        f"The {label} falls from the first layer to the last.",
        f"Per person, the mean over its queries of ({label} at the last layer − at the first layer) of the "
        "dependency maps at the predicted keypoints; the statistic is the share of people for whom it falls, "
        "with a one-sided sign test over people (people, not queries, are the independent cases).",
        f"it falls for more than half of the people, the sign test gives p < {SIGN_TEST_P:g}, and the mean over "
        f"all queries falls by at least {MIN_RELATIVE_FALL:.0%} of its first-layer value; not measured with one "
        f"layer or fewer than {MIN_PEOPLE_SIGN} people.",
        value, _verdict(measured, value > 0.5 and p < SIGN_TEST_P and fall >= MIN_RELATIVE_FALL), "figures/depth.png",
        {"people": n, "people_falling": neg, "sign_test_p": p, "mean_by_layer": per_layer, "relative_fall": fall,
         "mean_change_last_minus_first": _mean(diffs)})


def _claim_occluded(q: list[dict]) -> Claim:
    occ = [r for r in q if r["v"] == 1]
    vis = [r for r in q if r["v"] == 2]
    value = _mean([float(r["hit"]) for r in occ])
    vis_pck = _mean([float(r["hit"]) for r in vis])
    return Claim(
        "occluded_keypoints_found", "4. Occluded keypoints are still found",
        "Keypoints that are labelled but occluded (v=1) are still localised.",
        f"PCK@{PCK_ALPHA:g} over occluded keypoints (v=1), beside the same for visible ones.",
        f"occluded PCK@{PCK_ALPHA:g} ≥ {OCCLUDED_PCK_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} "
        "occluded keypoints.",
        value, _verdict(len(occ) >= MIN_KEYPOINTS, value >= OCCLUDED_PCK_MIN), "figures/occlusion.png",
        {"num_occluded": len(occ), "num_visible": len(vis), "pck_visible": vis_pck,
         "ratio_occluded_to_visible": value / vis_pck if vis_pck > 0 else float("nan"),
         "pck_occluded_by_type": {COCO_KEYPOINTS[k]: _mean([float(r["hit"]) for r in occ if r["k"] == k])
                                  for k in range(17)}})


def _claim_hidden(studies: list[dict], asked: int) -> Claim:
    shifts = [s["cue_shift"] for s in studies]
    neg, n, p = sign_test([-x for x in shifts])     # test "mostly positive"
    value = _mean(shifts)
    return Claim(
        "hidden_keypoint_uses_other_cues", "4. Occluded keypoints are still found",
        "When a keypoint is hidden, its dependency shifts onto other body cues.",
        "A visible limb joint is hidden (its disc in the image filled with the image's mean colour) and the "
        "last layer's dependency at the keypoint's prediction is measured before and after. The statistic is "
        "the mean change of the share of mass on the other body cues (mirror joint, neighbours, head, rest "
        "of the body; regions of the clean prediction), with a one-sided sign test over the hidden keypoints.",
        f"the mean change is > 0 and the sign test gives p < {SIGN_TEST_P:g}; not measured with fewer than "
        f"{MIN_PEOPLE_SIGN} hidden keypoints.",
        value, _verdict(n >= MIN_PEOPLE_SIGN, value > 0 and p < SIGN_TEST_P), "figures/occlusion.png",
        {"hidden_keypoints": len(studies), "asked": asked, "increases": neg, "sign_test_p": p,
         "mean_shift_by_region": {r: _mean([s["shift"][r] for s in studies]) for r in REGIONS},
         "still_found_after_hiding": _mean([float(s["found_after"]) for s in studies if s["found_after"] is not None]),
         "median_displacement_norm": _median([s["displacement_norm"] for s in studies]),
         "studies": studies})


def _map_statistics(maps: dict[int, dict[int, np.ndarray]]) -> dict:
    """Per type: mean map, spread (total variation to the mean), and for every map its correlation with its
    own type's person-left-out mean and with the other types' person-left-out means."""
    sums = {k: sum(d.values()) for k, d in maps.items() if len(d) >= 2}
    counts = {k: len(maps[k]) for k in sums}
    r_own, r_other, spread = {}, {}, {}
    for k in sums:
        mean = sums[k] / counts[k]
        spread[k] = [0.5 * float(np.abs(m - mean).sum()) for m in maps[k].values()]
        r_own[k], r_other[k] = [], []
        for p, m in maps[k].items():
            own = (sums[k] - m) / (counts[k] - 1)
            others = []
            for j in sums:
                if j == k:
                    continue
                mj = maps[j].get(p)
                n = counts[j] - (mj is not None)
                if n > 0:
                    others.append(_pearson(m, (sums[j] - (mj if mj is not None else 0)) / n))
            r_own[k].append(_pearson(m, own))
            r_other[k].append(_mean(others))
    return {"sums": sums, "counts": counts, "r_own": r_own, "r_other": r_other, "spread": spread}


def _claims_maps(stats: dict) -> list[Claim]:
    own = [x for k in stats["r_own"] for x in stats["r_own"][k]]
    pairs = [(a, b) for k in stats["r_own"] for a, b in zip(stats["r_own"][k], stats["r_other"][k])
             if np.isfinite(a) and np.isfinite(b)]
    measured = len(own) >= MIN_KEYPOINTS
    r_mean = _mean(own)
    common = float(np.mean([a > b for a, b in pairs])) if pairs else float("nan")
    by_type = {COCO_KEYPOINTS[k]: {"maps": stats["counts"][k], "spread_tv": _mean(stats["spread"][k]),
                                   "r_own": _mean(stats["r_own"][k]), "r_other": _mean(stats["r_other"][k])}
               for k in sorted(stats["counts"])}
    section = "5. Dependencies are image-specific, with statistical commonalities"
    loo = ("Maps are the last layer's dependency maps on the crop's token grid, normalised to sum 1; the mean "
           "map of a keypoint type is taken over the set, leaving out the person whose map is compared. (In the "
           "crop frame, part of what a type's maps share is where that joint usually sits in a person's box.)")
    return [
        Claim("dependencies_image_specific", section,
              "Individual dependency maps differ from their keypoint type's mean map.",
              f"{loo} Statistic: the mean Pearson correlation r between a map and its type's mean map.",
              f"mean r < {SPECIFIC_R_MAX:g} (the mean map explains under {SPECIFIC_R_MAX ** 2:.0%} of a map's "
              f"variance); types need 2 people; not measured with fewer than {MIN_KEYPOINTS} maps.",
              r_mean, _verdict(measured, r_mean < SPECIFIC_R_MAX), "figures/mean_maps.png",
              {"maps": len(own), "by_type": by_type,
               "mean_spread_tv": _mean([x for v in stats["spread"].values() for x in v])}),
        Claim("dependencies_share_commonalities", section,
              "Maps of one keypoint type share a common pattern that sets them apart from other types.",
              f"{loo} Statistic: the share of maps that correlate more with their own type's mean map than "
              "(on average) with the other types' mean maps.",
              f"share ≥ {COMMON_FRACTION_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} maps.",
              common, _verdict(len(pairs) >= MIN_KEYPOINTS, common >= COMMON_FRACTION_MIN), "figures/mean_maps.png",
              {"maps": len(pairs), "mean_r_own": r_mean, "mean_r_other": _mean([b for _, b in pairs])}),
    ]


def _claim_randomisation(rand) -> Claim:
    section = "Sanity check: model randomisation"
    statement = "Dependency maps change when the encoder's weights are re-initialised."
    statistic = ("Cascading model-parameter randomisation (Adebayo et al. 2018; Quantus MPRT, top-down): a copy "
                 "of the model has its encoder layers re-initialised from the last one down, one more per step; "
                 "at the trained model's predicted keypoints (fixed), the last layer's dependency maps are "
                 "compared with the trained model's by Spearman's rank correlation. Statistic: the mean rho "
                 "after every encoder layer has been re-initialised. (Layers after the encoder, such as the "
                 "heatmap head, cannot change an attention map at a fixed query, so they are not part of the "
                 "cascade.)")
    criterion = f"mean rho < {RANDOMISED_RHO_MAX:g}; not measured without people for the occlusion subset."
    if rand is None:
        return Claim("randomisation_changes_maps", section, statement, statistic, criterion, None, UNMEASURED,
                     None, {})
    value = rand.steps[-1].mean("spearman", "dependency")
    return Claim("randomisation_changes_maps", section, statement, statistic, criterion, value,
                 _verdict(np.isfinite(value), value < RANDOMISED_RHO_MAX), "figures/randomisation.png",
                 {"steps": rand.summary(), "queries": rand.num_queries,
                  "note": "step 'trained' is an untouched copy: similarity 1 by construction"})


def _claim_agreement(rhos: list[dict], window: int, stride: int) -> Claim:
    value = _median([r["dependency"] for r in rhos])
    return Claim(
        "attention_agrees_with_occlusion", "Sanity check: attention vs occlusion sensitivity",
        "Where the last layer attends is where hiding the image hurts the prediction.",
        f"For each labelled keypoint of the occlusion subset, the occlusion-sensitivity map (a {window}-pixel "
        f"square slid over the crop with stride {stride}, filled with the mean colour; value = drop of the "
        "keypoint's heatmap at its clean peak, averaged per token) is compared with the last layer's "
        "dependency map by Spearman's rho over the token grid. Statistic: the median rho.",
        f"median rho ≥ {AGREEMENT_RHO_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} keypoints.",
        value, _verdict(len(rhos) >= MIN_KEYPOINTS, value >= AGREEMENT_RHO_MIN), "figures/agreement.png",
        {"keypoints": len(rhos), "median_rho_first_layer": _median([r["first_layer"] for r in rhos]),
         "median_rho_rollout": _median([r["rollout"] for r in rhos]),
         "mean_rho": _mean([r["dependency"] for r in rhos])})


# ---------------------------------------------------------------------------------------------------
# The report

def check_report_dir(out_dir: str | Path) -> Path:
    """Fail early unless `out_dir` can become the report: absent, empty, or an earlier findings report
    (which is replaced). Any other non-empty folder is refused rather than overwritten."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "findings.json").is_file():
        raise ValueError(f"refusing to write into {out}: the folder is not empty and is not a findings report "
                         "(no findings.json); choose a new folder")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"output folder's parent does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output folder's parent is not writable: {parent}")
    return out


def findings(pose_model: PoseModel, annotations: str | Path, images: str | Path, out_dir: str | Path,
             max_people: int | None = 200, occlusion_people: int = 20, flip: bool = True,
             window: int = 32, stride: int = 16, seed: int = 0,
             progress: Callable[[str, int, int], None] | None = None, data_note: str | None = None,
             command: str | None = None) -> Findings:
    """Measure every claim over the people of a COCO person-keypoints file and write the report to `out_dir`.

    `max_people` bounds the set (file order); the occlusion-based parts (hidden keypoints, occlusion
    sensitivity, randomisation) run on the first `occlusion_people` analysed people, since they cost many
    forward passes (0 skips them: those claims are "not measured"). `progress(stage, done, total)`.
    """
    if tuple(pose_model.keypoint_names) != COCO_KEYPOINTS:
        raise ValueError(f"the findings need a model that predicts the 17 COCO keypoints; {pose_model.name} "
                         f"predicts {len(pose_model.keypoint_names)} others")
    if max_people is not None and max_people < 1:
        raise ValueError(f"max_people must be at least 1, got {max_people}")
    if occlusion_people < 0:
        raise ValueError(f"occlusion_people must be 0 or more, got {occlusion_people}")
    out = check_report_dir(out_dir)
    people = read_people(annotations, images, max_people)
    started = time.time()
    report = lambda stage, i, n: progress(stage, i, n) if progress else None  # noqa: E731

    m = _Measurements()
    cache: dict = {}
    for i, person in enumerate(people):
        try:
            ex = pose_model.explain(_load_image(person.image, cache), bbox=person.bbox, flip=flip)
            _measure_person(ex, person, i, m)
            m.analysed.append(i)
            if m.example is None:
                m.example = ex
        except Exception as exc:  # one bad image or person must not stop the report
            m.skipped.append({"image": str(person.image), "annotation_id": person.annotation_id,
                              "reason": _one_line(exc)})
        report("people", i + 1, len(people))
    if not m.analysed:
        raise ValueError(f"no person could be analysed: {m.skipped[0]['reason']}")

    subset = m.analysed[:occlusion_people]
    studies, rhos, asked, rand = [], [], 0, None
    if subset:
        report("occlusion", 0, len(subset))     # the sweep is slow (minutes per person on TP-H): say it started
    for n, i in enumerate(subset):
        person = people[i]
        image = _load_image(person.image, cache)
        try:
            s, a = _hidden_studies(pose_model, image, person, n, flip)
            studies += s
            asked += a
            rhos += _agreement(pose_model, image, person, window, stride)
        except Exception as exc:
            m.skipped.append({"image": str(person.image), "annotation_id": person.annotation_id,
                              "reason": f"occlusion: {_one_line(exc)}"})
        report("occlusion", n + 1, len(subset))
    if subset:
        samples = [(_load_image(people[i].image, cache), people[i].bbox) for i in subset]
        rand = model_randomisation(pose_model, samples, seed=seed, flip=flip,
                                   progress=lambda d, t: report("randomisation", d, t))

    q = m.queries
    stats = _map_statistics(m.maps)
    claims = [_claim_activation_max(q), _claim_person(q), _claim_head(q), _claim_symmetric(q),
              _depth_claim(q, "distance_body", "mean attention distance", "finer_with_depth_distance", m.num_layers),
              _depth_claim(q, "entropy", "attention entropy", "finer_with_depth_entropy", m.num_layers),
              _claim_occluded(q), _claim_hidden(studies, asked), *_claims_maps(stats),
              _claim_randomisation(rand), _claim_agreement(rhos, window, stride)]
    meta = {"model": pose_model.name, "layers": m.num_layers, "token_grid": list(pose_model.layout.grid),
            "annotations": str(annotations), "images": str(images), "data": data_note or str(annotations),
            "people_asked": len(people), "people_analysed": len(m.analysed), "queries": len(q),
            "occlusion_people": len(subset), "skipped": m.skipped, "flip": flip, "max_people": max_people,
            "pck_alpha": PCK_ALPHA, "seconds": round(time.time() - started, 1), "command": command,
            "criteria": {c.id: c.criterion for c in claims}}
    numbers = {"queries": [_compact(r) for r in q],
               "region_shares_by_type": _region_table(q),
               "per_layer": {key: [_mean([r[key][i] for r in q]) for i in range(m.num_layers)]
                             for key in ("entropy", "distance_body", "distance_px")},
               "agreement": rhos}
    result = Findings(claims, numbers, meta)
    report("writing", 0, 1)
    _write(result, out, m, stats, studies, rhos, rand)
    result.out_dir = out
    report("writing", 1, 1)
    return result


def synthetic_findings(pose_model: PoseModel, n: int, out_dir: str | Path, seed: int = 0, **kwargs) -> Findings:
    """`findings` on `n` images of synthetic people made by `tpexplain.training.synth` (generated in a temporary
    folder, removed afterwards; the same n and seed give the same images)."""
    from ..training import synth
    if n < 1:
        raise ValueError(f"--synthetic needs at least 1 image, got {n}")
    check_report_dir(out_dir)
    with tempfile.TemporaryDirectory(prefix="tpexplain-synth-") as tmp:
        ann = synth.make_dataset(tmp, n, seed)
        return findings(pose_model, ann, Path(tmp) / "images", out_dir, seed=seed,
                        data_note=f"{n} synthetic images (tpexplain.training.synth, seed {seed})", **kwargs)


def _hidden_studies(pose_model, image, person: Person, n: int, flip: bool, per_person: int = 2
                    ) -> tuple[list[dict], int]:
    """Hide up to `per_person` visible limb joints (rotating through the types so the set covers all)."""
    gt = person.keypoints
    visible = [k for k in LIMB_JOINTS if gt[k, 2] == 2]
    start = (2 * n) % len(LIMB_JOINTS)
    order = sorted(visible, key=lambda k: (LIMB_JOINTS.index(k) - start) % len(LIMB_JOINTS))[:per_person]
    size = max(person.bbox[2], person.bbox[3])
    out = []
    for k in order:
        s = occlusion_study(pose_model, image, k, bbox=person.bbox, fill="mean", flip=flip)
        shift = {r: s.masses_after[r] - s.masses_before[r] for r in REGIONS}
        err = float(np.hypot(*(s.after.keypoints[k, :2] - gt[k, :2])))
        out.append({"annotation_id": person.annotation_id, "keypoint": COCO_KEYPOINTS[k],
                    "masses_before": s.masses_before, "masses_after": s.masses_after, "shift": shift,
                    "cue_shift": sum(shift[r] for r in BODY_CUES),
                    "displacement_norm": s.displacement_norm, "peak_drop": s.peak_drop,
                    "found_after": bool(err <= PCK_ALPHA * size)})
    return out, len(order)


def _agreement(pose_model, image, person: Person, window: int, stride: int) -> list[dict]:
    labelled = [COCO_KEYPOINTS[k] for k in np.flatnonzero(person.keypoints[:, 2] > 0)]
    rows = attention_occlusion_agreement(pose_model, image, person.bbox, labelled, window, stride)
    return [{"annotation_id": person.annotation_id, **r} for r in rows]


def _region_table(q: list[dict]) -> dict:
    return {COCO_KEYPOINTS[k]: {r: _mean([x["masses"][r] for x in q if x["k"] == k]) for r in REGIONS}
            for k in range(17)}


def _compact(r: dict) -> dict:
    return {k: (round(v, 5) if isinstance(v, float) else
                [round(x, 5) for x in v] if isinstance(v, list) else
                {a: round(b, 5) for a, b in v.items()} if isinstance(v, dict) else v) for k, v in r.items()}


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _num(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


# ---------------------------------------------------------------------------------------------------
# Figures

def _bar_line(ax, threshold: float, label: str) -> None:
    ax.axhline(threshold, color="black", ls="--", lw=0.8, label=label)


def _fig_activation(q: list[dict]):
    fig, ax = plt.subplots(figsize=(8, 3))
    x = np.arange(17)
    for off, v, label in ((-0.2, 2, "visible (v=2)"), (0.2, 1, "occluded (v=1)")):
        ys = [_mean([float(r["hit"]) for r in q if r["k"] == k and r["v"] == v]) for k in range(17)]
        ax.bar(x + off, np.nan_to_num(ys), 0.4, label=label)
    _bar_line(ax, PCK_MIN, f"criterion {PCK_MIN:g}")
    ax.set_xticks(x, COCO_KEYPOINTS, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"PCK@{PCK_ALPHA:g}", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("heatmap peaks on ground-truth keypoints, by type", fontsize=9)
    return fig


def _fig_person(q: list[dict], ex: Explanation | None):
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), gridspec_kw={"width_ratios": [2, 1]})
    c = [r["concentration"] for r in q if r["concentration"] is not None]
    axes[0].hist(c, bins=30, range=(-1, 1), color="#4477aa")
    axes[0].axvline(CONCENTRATION_MIN, color="black", ls="--", lw=0.8, label=f"criterion {CONCENTRATION_MIN:g}")
    axes[0].axvline(_median(c), color="#cc3311", lw=1.2, label=f"median {_median(c):.2f}")
    axes[0].set_xlabel("concentration on the person (0 = uniform, 1 = all on the person)", fontsize=8)
    axes[0].legend(fontsize=7)
    if ex is not None:
        ex.dependency("nose" if ex.keypoints[0, 2] > 0 else 0).plot(axes[1], colorbar=False)
    else:
        axes[1].set_axis_off()
    return fig


def _fig_regions(q: list[dict]):
    table = _region_table(q)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = np.arange(17)
    bottom = np.zeros(17)
    colors = ("#cc3311", "#ee7733", "#009988", "#33bbee", "#bbbbbb", "#555555")
    for r, col in zip(REGIONS, colors):
        ys = np.nan_to_num([table[n][r] for n in COCO_KEYPOINTS])
        ax.bar(x, ys, 0.7, bottom=bottom, label=r, color=col)
        bottom += ys
    ax.set_xticks(x, COCO_KEYPOINTS, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of last-layer dependency", fontsize=8)
    ax.legend(fontsize=6, ncol=6, loc="upper center", bbox_to_anchor=(0.5, 1.15))
    return fig


def _fig_symmetric(claim: Claim):
    sri, adj = claim.details["symmetric_reliance_index"], claim.details["adjacent_reliance_index"]
    fig, ax = plt.subplots(figsize=(8, 3))
    x = np.arange(17)
    ax.bar(x - 0.2, [sri.get(n, np.nan) for n in COCO_KEYPOINTS], 0.4, label="mirror joint", color="#ee7733")
    ax.bar(x + 0.2, [adj.get(n, np.nan) for n in COCO_KEYPOINTS], 0.4, label="neighbours", color="#009988")
    _bar_line(ax, 1.0, "distance alone = 1")
    ax.axhline(SRI_MIN, color="#cc3311", ls=":", lw=0.8, label=f"criterion {SRI_MIN:g}")
    ax.set_xticks(x, COCO_KEYPOINTS, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("observed ÷ distance-matched mass", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title("reliance index per keypoint type (last layer)", fontsize=9)
    return fig


def _fig_depth(q: list[dict], num_layers: int):
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    layers = np.arange(1, num_layers + 1)
    for ax, key, label in ((axes[0], "distance_body", "mean attention distance (person sizes)"),
                           (axes[1], "entropy", "attention entropy (nats)")):
        vals = np.array([r[key] for r in q]) if q else np.zeros((0, num_layers))
        if len(vals):
            lo, mid, hi = np.percentile(vals, [25, 50, 75], axis=0)
            ax.fill_between(layers, lo, hi, alpha=0.25, color="#4477aa", label="quartiles")
            ax.plot(layers, mid, "o-", color="#4477aa", label="median")
            ax.plot(layers, vals.mean(0), "s--", color="#cc3311", ms=3, label="mean")
        ax.set_xticks(layers)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    return fig


def _fig_occlusion(q: list[dict], studies: list[dict]):
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    vals = [_mean([float(r["hit"]) for r in q if r["v"] == v]) for v in (2, 1)]
    axes[0].bar([0, 1], np.nan_to_num(vals), color=["#4477aa", "#ee7733"])
    axes[0].set_xticks([0, 1], [f"visible ({sum(r['v'] == 2 for r in q)})", f"occluded ({sum(r['v'] == 1 for r in q)})"],
                       fontsize=8)
    _bar_line(axes[0], OCCLUDED_PCK_MIN, f"criterion {OCCLUDED_PCK_MIN:g}")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel(f"PCK@{PCK_ALPHA:g}", fontsize=8)
    axes[0].legend(fontsize=7)
    x = np.arange(len(REGIONS))
    before = [_mean([s["masses_before"][r] for s in studies]) for r in REGIONS]
    after = [_mean([s["masses_after"][r] for s in studies]) for r in REGIONS]
    axes[1].bar(x - 0.2, np.nan_to_num(before), 0.4, label="before hiding")
    axes[1].bar(x + 0.2, np.nan_to_num(after), 0.4, label="after hiding")
    axes[1].set_xticks(x, REGIONS, rotation=30, fontsize=7)
    axes[1].set_title(f"dependency of a hidden limb joint ({len(studies)} cases)", fontsize=9)
    axes[1].legend(fontsize=7)
    return fig


def _fig_mean_maps(m: _Measurements, stats: dict, input_size: tuple[int, int]):
    fig, axes = plt.subplots(3, 7, figsize=(12, 7.4))
    cells = axes.reshape(-1)
    n = len(m.analysed)
    background = (m.crop_sum / max(n, 1)).clip(0, 255).astype(np.uint8) if m.crop_sum is not None else None
    h, w = input_size
    for k in range(17):
        ax = cells[k]
        ax.set_axis_off()
        if k not in stats["sums"] or background is None:
            ax.set_title(f"{COCO_KEYPOINTS[k]} (too few)", fontsize=7)
            continue
        mean = stats["sums"][k] / stats["counts"][k]
        up = cv2.resize(mean.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        q = np.mean(m.query_crop[k], axis=0)
        figures.overlay(ax, background, up, (q[0], q[1]), colorbar=False,
                        title=f"{COCO_KEYPOINTS[k]} · n={stats['counts'][k]}\nspread {_mean(stats['spread'][k]):.2f}")
        ax.set_xlim(-0.5, w - 0.5)      # a mean query off the crop must not shrink the panel
        ax.set_ylim(h - 0.5, -0.5)
    ax = fig.add_subplot(3, 7, (18, 21))
    for c in cells[17:]:
        c.set_axis_off()
    types = [k for k in range(17) if k in stats["r_own"]]
    ax.bar(np.arange(len(types)) - 0.2, [_mean(stats["r_own"][k]) for k in types], 0.4, label="r with own type's mean")
    ax.bar(np.arange(len(types)) + 0.2, [_mean(stats["r_other"][k]) for k in types], 0.4, label="r with other types'")
    ax.axhline(SPECIFIC_R_MAX, color="black", ls="--", lw=0.8)
    ax.set_xticks(np.arange(len(types)), [COCO_KEYPOINTS[k] for k in types], rotation=60, fontsize=6)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    fig.suptitle("mean last-layer dependency map per keypoint type over the set (on the mean crop); "
                 "spread = mean total variation of individual maps to the mean", fontsize=9)
    return fig


def _fig_agreement(rhos: list[dict]):
    fig, ax = plt.subplots(figsize=(6, 3))
    for key, col in (("dependency", "#4477aa"), ("rollout", "#ee7733"), ("first_layer", "#999999")):
        vals = [r[key] for r in rhos if np.isfinite(r[key])]
        ax.hist(vals, bins=20, range=(-1, 1), alpha=0.55, color=col, label=f"{key} (median {_median(vals):.2f})")
    ax.axvline(AGREEMENT_RHO_MIN, color="black", ls="--", lw=0.8, label=f"criterion {AGREEMENT_RHO_MIN:g}")
    ax.set_xlabel("Spearman rho, attention vs occlusion sensitivity", fontsize=8)
    ax.legend(fontsize=7)
    return fig


def _save(fig, path: Path) -> None:
    figures.save_figure(fig, path, dpi=90)


def _write(result: Findings, out: Path, m: _Measurements, stats: dict, studies, rhos, rand) -> None:
    parent = out.absolute().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        figdir = tmp / "figures"
        figdir.mkdir()
        q = m.queries
        _save(_fig_activation(q), figdir / "activation_max.png")
        _save(_fig_person(q, m.example), figdir / "dependency_on_person.png")
        _save(_fig_regions(q), figdir / "regions_by_type.png")
        _save(_fig_symmetric(result.claim("limb_joints_use_symmetric_joint")), figdir / "symmetric_reliance.png")
        _save(_fig_depth(q, m.num_layers), figdir / "depth.png")
        _save(_fig_occlusion(q, studies), figdir / "occlusion.png")
        figures.save_figure(_fig_mean_maps(m, stats, m.example.input_size), figdir / "mean_maps.png", dpi=70)
        _save(_fig_agreement(rhos), figdir / "agreement.png")
        if rand is not None:
            _save(rand.figure(), figdir / "randomisation.png")
        figures.save_figure(m.example.grid(layers=[-1]), figdir / "example_dependencies.png", dpi=55)
        for c in result.claims:
            if c.figure and not (tmp / c.figure).exists():
                c.figure = None
        result.meta["figures"] = sorted(f"figures/{p.name}" for p in figdir.iterdir())
        (tmp / "findings.json").write_text(json.dumps(result.to_dict(), indent=1, allow_nan=False))
        blocks = _report_blocks(result)
        (tmp / "report.md").write_text(_markdown(blocks))
        (tmp / "report.html").write_text(_html(blocks, tmp))
        _publishable(tmp)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.replace(out, old / "report")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publishable(root: Path) -> None:
    """Temporary files are private (0600/0700); give the report the usual permissions under the umask."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [root, *root.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _report_blocks(f: Findings) -> list[tuple]:
    meta = f.meta
    b: list[tuple] = [("h1", f"Findings: {meta['model']}")]
    b.append(("p", f"Model **{meta['model']}** ({meta['layers']} encoder layers, token grid "
                   f"{meta['token_grid'][0]}x{meta['token_grid'][1]}) on {meta['data']}: "
                   f"{meta['people_analysed']} people analysed of {meta['people_asked']} read "
                   f"({len(meta['skipped'])} skipped or partly skipped), {meta['queries']} keypoint queries; "
                   f"occlusion-based parts on {meta['occlusion_people']} people. Flip test "
                   f"{'on' if meta['flip'] else 'off'}. {meta['seconds']} s."))
    if meta.get("command"):
        b.append(("p", "Regenerate with:"))
        b.append(("code", meta["command"]))
    b.append(("h2", "Method"))
    b.append(("p", "Each person is cropped with its ground-truth box. The query of keypoint k is the model's "
                   "predicted location of k (the heatmap maximum, as in the paper's activation-maximum view); only "
                   "keypoints labelled in the ground truth are queried. A dependency map is the attention row of the "
                   "query's token (mean of heads). Accuracy uses the ground-truth keypoints with their visibility "
                   "flags (v=2 visible, v=1 occluded). Body regions are discs of radius r (a tenth of the person's "
                   "size, at least one token) around the ground-truth joints where labelled (predicted ones "
                   "elsewhere), plus the bones and the torso; each token belongs to one region, in the order own "
                   "joint, mirror joint, neighbours, head, rest of the body, background."))
    b.append(("p", "Every claim below states its statistic and its criterion before its result. The criteria are "
                   "constants in `tpexplain/analysis/findings.py`, fixed before any model was measured; a claim "
                   "that fails for this model is reported as failing."))
    sections: dict[str, list[Claim]] = {}
    for c in f.claims:
        sections.setdefault(c.section, []).append(c)
    for section, claims in sections.items():
        b.append(("h2", section))
        for c in claims:
            b.append(("h3", c.statement))
            b.append(("p", f"**Statistic.** {c.statistic}"))
            b.append(("p", f"**Criterion.** {c.criterion}"))
            b.append(("p", f"**Result.** {_fmt(c.value)} → **{c.verdict}**. {_detail_line(c)}"))
            if c.figure:
                b.append(("img", c.figure, c.statement))
    b.append(("h2", "Example: last-layer dependency maps of the first person"))
    b.append(("img", "figures/example_dependencies.png", "dependency maps, last layer"))
    b.append(("h2", "Summary"))
    b.append(("table", ["claim", "statistic", "criterion", "verdict"],
              [[c.id, _fmt(c.value), c.criterion.split(";")[0], c.verdict] for c in f.claims]))
    if meta["skipped"]:
        b.append(("h2", "Skipped"))
        b.append(("list", [f"{s['image']} (annotation {s['annotation_id']}): {s['reason']}" for s in meta["skipped"]]))
    b.append(("p", "All numbers, including every query's, are in `findings.json`."))
    return b


def _detail_line(c: Claim) -> str:
    d = c.details
    parts = {
        "activation_max_on_keypoint": lambda: f"{d['num_visible']} visible keypoints; median error "
                                              f"{_fmt(d['median_error_body'])} box sizes.",
        "dependency_on_person": lambda: f"{d['num_queries']} queries; mean mass on the person "
                                        f"{_fmt(d['mean_person_mass'])} vs its area share {_fmt(d['mean_person_area'])}.",
        "head_joints_on_head": lambda: f"{d['num_queries']} head queries; the head covers "
                                       f"{_fmt(d['mean_head_area'])} of the grid on average.",
        "limb_joints_use_symmetric_joint": lambda: "index by type: " + ", ".join(
            f"{k} {_fmt(v, 2)}" for k, v in d["symmetric_reliance_index"].items()) + ".",
        "finer_with_depth_distance": lambda: _depth_line(d),
        "finer_with_depth_entropy": lambda: _depth_line(d),
        "occluded_keypoints_found": lambda: f"{d['num_occluded']} occluded keypoints; visible PCK "
                                            f"{_fmt(d['pck_visible'])} ({d['num_visible']}).",
        "hidden_keypoint_uses_other_cues": lambda: f"{d['hidden_keypoints']} hidden keypoints, sign test p = "
                                                   f"{_fmt(d['sign_test_p'])}; own-region share changes by "
                                                   f"{_fmt(d['mean_shift_by_region']['own'])}; still found after "
                                                   f"hiding: {_fmt(d['still_found_after_hiding'])}.",
        "dependencies_image_specific": lambda: f"{d['maps']} maps; mean spread (total variation to the mean map) "
                                               f"{_fmt(d['mean_spread_tv'])}.",
        "dependencies_share_commonalities": lambda: f"{d['maps']} maps; mean r with own type's mean "
                                                    f"{_fmt(d['mean_r_own'])}, with other types' {_fmt(d['mean_r_other'])}.",
        "randomisation_changes_maps": lambda: "mean rho by step: " + ", ".join(
            f"{s['step']} {_fmt(s['spearman_dependency'], 2)}" for s in d["steps"]) + "; rollout maps: " + ", ".join(
            f"{_fmt(s['spearman_rollout'], 2)}" for s in d["steps"]) + ".",
        "attention_agrees_with_occlusion": lambda: f"{d['keypoints']} keypoints; median rho of the first layer "
                                                   f"{_fmt(d['median_rho_first_layer'])}, of rollout "
                                                   f"{_fmt(d['median_rho_rollout'])}.",
    }
    try:
        return parts[c.id]() if c.id in parts and d else ""
    except (KeyError, TypeError):
        return ""


def _depth_line(d: dict) -> str:
    layers = ", ".join(f"L{i + 1} {_fmt(v)}" for i, v in enumerate(d["mean_by_layer"]))
    return (f"falls for {d['people_falling']} of {d['people']} people, sign test p = {_fmt(d['sign_test_p'])}; "
            f"mean by layer: {layers} (relative fall {_fmt(d['relative_fall'])}).")


def _markdown(blocks: list[tuple]) -> str:
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + blk[1])
        elif kind == "p":
            out.append(blk[1])
        elif kind == "code":
            out.append(f"```\n{blk[1]}\n```")
        elif kind == "img":
            out.append(f"![{blk[2]}]({blk[1]})")
        elif kind == "list":
            out.append("\n".join(f"- {x}" for x in blk[1]))
        elif kind == "table":
            header, rows = blk[1], blk[2]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def _html(blocks: list[tuple], root: Path) -> str:
    body = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline(blk[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(blk[1])}</p>")
        elif kind == "code":
            body.append(f"<pre>{html.escape(blk[1])}</pre>")
        elif kind == "img":
            data = base64.b64encode((root / blk[1]).read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(blk[2])}">'
                        f"<figcaption>{html.escape(blk[1])}</figcaption></figure>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in blk[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in blk[1])
            rows = "".join("<tr>" + "".join(f"<td class='{_cls(c)}'>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                           for r in blk[2])
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45;padding:0 1em}"
             "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
             "td.holds{background:#dfd}td.fails{background:#fdd}td.unmeasured{background:#eee}"
             "pre{background:#f4f4f4;padding:.5em;overflow-x:auto}figcaption{color:#666;font-size:.8em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>tpexplain findings</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _cls(cell) -> str:
    return {HOLDS: "holds", FAILS: "fails", UNMEASURED: "unmeasured"}.get(cell, "")
