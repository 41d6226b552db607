"""Per-person measurements behind the findings: each labelled keypoint's dependency map, its regions and layers,
plus hidden-keypoint studies and attention-vs-occlusion agreement on a subset."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...api import PoseModel
from ...explanation import Explanation
from ...keypoints import COCO_KEYPOINTS, PCK_ALPHA
from ...progress import one_line
from ...transforms import apply_affine
from ..depth import layer_metrics, token_centers
from ..occlusion import occlusion_study
from ..regions import REGIONS, region_masks
from ..sanity import attention_occlusion_agreement
from .claims import BODY_CUES, LIMB_JOINTS
from .people import Person, load_image


@dataclass
class Measurements:
    """What the claims are computed from, gathered person by person."""

    queries: list[dict] = field(default_factory=list)           # one per (person, labelled keypoint)
    maps: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)   # k → person → last-layer map
    query_crop: dict[int, list] = field(default_factory=dict)   # k → predicted crop points
    crop_sum: np.ndarray | None = None
    analysed: list[int] = field(default_factory=list)           # indices into people
    skipped: list[dict] = field(default_factory=list)
    example: Explanation | None = None
    num_layers: int = 0


def measure_people(pose_model: PoseModel, people: list[Person], flip: bool, cache: dict,
                   step: Callable[[int], None]) -> Measurements:
    """Explain and measure every person; one that fails is recorded as skipped. `step(i)` after person i."""
    m = Measurements()
    for i, person in enumerate(people):
        try:
            ex = pose_model.explain(load_image(person.image, cache), bbox=person.bbox, flip=flip)
            measure_person(ex, person, i, m)
            m.analysed.append(i)
            if m.example is None:
                m.example = ex
        except Exception as exc:  # one bad image or person must not stop the report
            m.skipped.append({"image": str(person.image), "annotation_id": person.annotation_id,
                              "reason": one_line(exc)})
        step(i)
    return m


def measure_occlusion(pose_model: PoseModel, people: list[Person], m: Measurements, subset: list[int], flip: bool,
                      window: int, stride: int, cache: dict, step: Callable[[int], None]
                      ) -> tuple[list[dict], list[dict], int]:
    """(hidden-keypoint studies, agreement rows, keypoints asked to hide) over the people `subset`; a person
    that fails is added to `m.skipped`. `step(n)` after the subset's n-th person."""
    studies, rhos, asked = [], [], 0
    for n, i in enumerate(subset):
        person = people[i]
        image = load_image(person.image, cache)
        try:
            s, a = hidden_studies(pose_model, image, person, n, flip)
            studies += s
            asked += a
            rhos += agreement(pose_model, image, person, window, stride)
        except Exception as exc:
            m.skipped.append({"image": str(person.image), "annotation_id": person.annotation_id,
                              "reason": f"occlusion: {one_line(exc)}"})
        step(n)
    return studies, rhos, asked


def _gt_explanation(ex: Explanation, gt: np.ndarray) -> Explanation:
    """`ex` with its pose replaced by the ground truth where labelled (regions only; the maps stay)."""
    labelled = gt[:, 2] > 0
    crop = np.where(labelled[:, None], apply_affine(gt[:, :2], ex.crop.to_crop), ex.keypoints_crop)
    image = ex.keypoints.copy()
    image[labelled, :2] = gt[labelled, :2]
    return dataclasses.replace(ex, keypoints=image, keypoints_crop=crop.astype(np.float32))


def _share(v: np.ndarray, mask: np.ndarray) -> float:
    return float(v[mask].sum())


def measure_person(ex: Explanation, person: Person, index: int, m: Measurements) -> None:
    """Add one query row per labelled keypoint of `person` (explained as `ex`) to `m`."""
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
        sym = distance_matched(v, query, centres, masks["symmetric"], masks["own"] | masks["symmetric"], bin_px)
        adj = distance_matched(v, query, centres, masks["adjacent"],
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


def distance_matched(v: np.ndarray, query, centres: np.ndarray, target: np.ndarray, exclude: np.ndarray,
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


def hidden_studies(pose_model, image, person: Person, n: int, flip: bool, per_person: int = 2
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


def agreement(pose_model, image, person: Person, window: int, stride: int) -> list[dict]:
    """Attention vs occlusion-sensitivity rank correlations for the person's labelled keypoints."""
    labelled = [COCO_KEYPOINTS[k] for k in np.flatnonzero(person.keypoints[:, 2] > 0)]
    rows = attention_occlusion_agreement(pose_model, image, person.bbox, labelled, window, stride)
    return [{"annotation_id": person.annotation_id, **r} for r in rows]
