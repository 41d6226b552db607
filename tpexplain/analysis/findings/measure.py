"""Measuring one person for the findings: `measure_person(pose_model, person, options)` → a JSON-able dict.

It is a pure function of its arguments (it reads the person's image itself and touches no global state), and
it and its arguments pickle, so the people of a report can be measured in any order, in other processes or on
a cluster; the report aggregates the list and gives the same numbers however the list was produced.

Keypoint claims are measured at the GROUND-TRUTH joint (the token TransPose's rule gives the labelled joint),
with each query marked correct or wrong by the prediction's PCK distance; hidden-joint studies hide the
ground-truth joint. Body regions are drawn around the ground-truth joints where labelled.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from ...api import PoseModel
from ...explanation import Explanation
from ...io import read_image
from ...keypoints import PCK_ALPHA
from ...progress import one_line
from ...transforms import apply_affine
from ..depth import attention_entropy, default_radius, mean_attention_distance, person_size, token_centers
from ..hiding import hide
from ..regions import REGIONS, region_masks
from ..sanity import attention_occlusion_agreement
from .people import Person

LIMB_JOINTS = (7, 8, 9, 10, 13, 14, 15, 16)   # COCO elbows, wrists, knees, ankles
BODY_CUES = ("symmetric", "adjacent", "head", "person")
THUMB = 4                                     # crops are kept at 1/4 size for the mean-crop figure


@dataclass(frozen=True)
class MeasureOptions:
    """How one person is measured. `occlusion` adds the costly parts (hidden joints, agreement with occlusion
    sensitivity); `index` is the person's position in the set (it rotates which limb joints are hidden)."""

    flip: bool = True
    occlusion: bool = False
    index: int = 0
    window: int = 32
    stride: int = 16
    hidden_per_person: int = 2


def person_tasks(people: list[Person], flip: bool = True, occlusion_people: int = 20, window: int = 32,
                 stride: int = 16) -> list[tuple[Person, MeasureOptions]]:
    """(person, options) for each person of the set: the first `occlusion_people` also get the occlusion parts."""
    return [(p, MeasureOptions(flip, i < occlusion_people, i, window, stride)) for i, p in enumerate(people)]


def measure_person(pose_model: PoseModel, person: Person, options: MeasureOptions) -> dict:
    """Every measurement the claims need for one person, as a JSON-able dict (floats, lists, dicts).

    Keys: person (where it is), index, num_layers, queries (one row per labelled keypoint), maps (keypoint
    index → the last layer's dependency map at the ground-truth joint, normalised, row-major floats),
    query_crop, thumb (the crop at 1/4 size), and with `options.occlusion`: hidden, agreement. A person that
    cannot be measured gets `skipped` (the reason, one line) instead; a failing occlusion part,
    `occlusion_skipped`."""
    out: dict = {"person": {"image": str(person.image), "image_id": person.image_id,
                            "annotation_id": person.annotation_id, "bbox": [float(v) for v in person.bbox],
                            "box_source": person.box_source},
                 "index": options.index}
    try:
        image = read_image(person.image)
        ex = pose_model.explain(image, bbox=person.bbox, flip=options.flip)
        ex.ground_truth = np.asarray(person.keypoints, np.float64)
        out.update(_queries(ex, person))
    except Exception as exc:  # one bad image or person must not stop the report
        out["skipped"] = one_line(exc)
        return out
    if options.occlusion:
        try:
            hidden = hidden_studies(pose_model, image, ex, person, options)
            rows = agreement(pose_model, image, person, options.window, options.stride)
            out["hidden"], out["agreement"] = hidden, rows
        except Exception as exc:
            out["occlusion_skipped"] = one_line(exc)
    return jsonable(out)


def gt_explanation(ex: Explanation, gt: np.ndarray) -> Explanation:
    """`ex` with its pose replaced by the ground truth where labelled (regions only; the maps stay)."""
    labelled = gt[:, 2] > 0
    crop = np.where(labelled[:, None], apply_affine(gt[:, :2], ex.crop.to_crop), ex.keypoints_crop)
    image = ex.keypoints.copy()
    image[labelled, :2] = gt[labelled, :2]
    return dataclasses.replace(ex, keypoints=image, keypoints_crop=crop.astype(np.float32))


def _normalised(values: np.ndarray) -> np.ndarray:
    v = np.clip(np.asarray(values, np.float64), 0, None)
    return v / v.sum() if v.sum() > 0 else np.full(v.shape, 1.0 / v.size)


def _queries(ex: Explanation, person: Person) -> dict:
    gt = person.keypoints
    size = max(person.bbox[2], person.bbox[3])
    dist = np.hypot(*(ex.keypoints[:, :2] - gt[:, :2]).T)
    ex_gt = gt_explanation(ex, gt)
    nose = region_masks(ex_gt, 0)
    # the head area is the union of the discs around the head joints; for the nose, regions.py splits
    # exactly that union into own (nose), adjacent (eyes) and head (ears)
    head_mask = nose["own"] | nose["adjacent"] | nose["head"]
    centres = token_centers(ex.layout)
    bin_px = float(max(ex.layout.stride))
    body = person_size(ex)
    rows, maps, points = [], {}, {}
    for k in np.flatnonzero(gt[:, 2] > 0):
        k = int(k)
        last = ex.dependency(k, at="gt")
        v = _normalised(last.values)
        query = last.query_crop
        masks = region_masks(ex_gt, k)
        masses = {r: float(v[masks[r]].sum()) for r in REGIONS}
        areas = {r: float(masks[r].mean()) for r in REGIONS}
        person_mass, person_area = 1 - masses["background"], 1 - areas["background"]
        sym = distance_matched(v, query, centres, masks["symmetric"], masks["own"] | masks["symmetric"], bin_px)
        adj = distance_matched(v, query, centres, masks["adjacent"],
                               masks["own"] | masks["symmetric"] | masks["adjacent"], bin_px)
        entropy, distance = [], []
        for layer in range(ex.num_layers):
            m = last if layer == ex.num_layers - 1 else ex.dependency(k, layer=layer, at="gt")
            entropy.append(attention_entropy(m.values))
            distance.append(mean_attention_distance(m.values, ex.layout, query))
        rows.append({
            "k": k, "keypoint": ex.keypoint_names[k], "v": int(gt[k, 2]),
            "error_norm": float(dist[k] / size), "hit": bool(dist[k] <= PCK_ALPHA * size),
            "masses": masses, "areas": areas,
            "head_share": float(v[head_mask].sum()), "head_area": float(head_mask.mean()),
            "symmetric_observed": sym[0], "symmetric_expected": sym[1],
            "adjacent_observed": adj[0], "adjacent_expected": adj[1],
            "concentration": (person_mass - person_area) / (1 - person_area) if person_area < 1 else None,
            "entropy": entropy, "distance_px": distance, "distance_body": [d / body for d in distance]})
        maps[str(k)] = v.astype(np.float32).reshape(-1).tolist()
        points[str(k)] = [float(query[0]), float(query[1])]
    h, w = ex.input_size
    thumb = cv2.resize(ex.crop_image, (w // THUMB, h // THUMB), interpolation=cv2.INTER_AREA)
    return {"num_layers": ex.num_layers, "grid": list(ex.layout.grid), "input_size": [h, w], "queries": rows,
            "maps": maps, "query_crop": points, "thumb": thumb.tolist()}


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


def gt_disc(ex: Explanation, gt_xy, radius_crop: float) -> np.ndarray:
    """Image-space disc mask of `radius_crop` (crop pixels, mapped to image pixels) around a ground-truth joint."""
    scale = float(np.sqrt(abs(np.linalg.det(ex.crop.from_crop[:, :2]))))
    canvas = np.zeros(ex.image.shape[:2], np.uint8)
    cv2.circle(canvas, (int(round(gt_xy[0])), int(round(gt_xy[1]))), max(int(round(radius_crop * scale)), 1), 1, -1)
    return canvas.astype(bool)


def hidden_studies(pose_model: PoseModel, image: np.ndarray, ex: Explanation, person: Person,
                   options: MeasureOptions) -> list[dict]:
    """Hide up to `options.hidden_per_person` visible limb joints at their GROUND-TRUTH position (a disc of the
    regions' radius filled with the image's mean colour; joint types rotate with the person's index) and
    compare the dependency at the ground-truth joint before and after, by region of the ground-truth pose."""
    gt = person.keypoints
    visible = [k for k in LIMB_JOINTS if k < len(gt) and gt[k, 2] == 2]
    start = (2 * options.index) % len(LIMB_JOINTS)
    order = sorted(visible, key=lambda k: (LIMB_JOINTS.index(k) - start) % len(LIMB_JOINTS))
    size = max(person.bbox[2], person.bbox[3])
    ex_gt = gt_explanation(ex, gt)
    out = []
    for k in order[:options.hidden_per_person]:
        mask = gt_disc(ex, gt[k, :2], default_radius(ex))
        if not mask.any():
            continue
        after = pose_model.explain(hide(image, mask, "mean"), bbox=person.bbox, flip=options.flip)
        after.ground_truth = ex.ground_truth
        regions = region_masks(ex_gt, k)
        before_v = _normalised(ex.dependency(k, at="gt").values)
        after_v = _normalised(after.dependency(k, at="gt").values)
        mb = {r: float(before_v[regions[r]].sum()) for r in REGIONS}
        ma = {r: float(after_v[regions[r]].sum()) for r in REGIONS}
        shift = {r: ma[r] - mb[r] for r in REGIONS}
        out.append({"k": k, "keypoint": ex.keypoint_names[k], "masses_before": mb, "masses_after": ma,
                    "shift": shift, "cue_shift": sum(shift[r] for r in BODY_CUES),
                    "hit_before": bool(np.hypot(*(ex.keypoints[k, :2] - gt[k, :2])) <= PCK_ALPHA * size),
                    "found_after": bool(np.hypot(*(after.keypoints[k, :2] - gt[k, :2])) <= PCK_ALPHA * size),
                    "displacement_norm": float(np.hypot(*(after.keypoints_crop[k] - ex.keypoints_crop[k]))
                                               / person_size(ex))})
    return out


def agreement(pose_model: PoseModel, image: np.ndarray, person: Person, window: int, stride: int) -> list[dict]:
    """Attention vs occlusion-sensitivity rank correlations for the person's labelled keypoints. Both maps are
    about the PREDICTION (the sensitivity is the drop of the heatmap at its clean peak), so the attention is
    queried at the predicted keypoint here."""
    labelled = [pose_model.keypoint_names[k] for k in np.flatnonzero(person.keypoints[:, 2] > 0)]
    rows = attention_occlusion_agreement(pose_model, image, person.bbox, labelled, window, stride)
    return [{k: (float(x) if isinstance(x, (float, np.floating)) else x) for k, x in r.items()} for r in rows]


def jsonable(x):
    """`x` with numpy values as plain Python ones and non-finite floats as None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    return x
