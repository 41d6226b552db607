"""The claims: each one's statistic and criterion (fixed here before any result is seen), and its verdict.

Every claim has one statistic and one criterion; the verdict is "holds", "does not hold", or "not measured"
when the set has too few cases for the statistic. Criteria are never adjusted to a model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...keypoints import COCO_KEYPOINTS, HEAD, PCK_ALPHA, flip_index
from ..regions import REGIONS
from ..stats import pearson, sign_test

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
# Results

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
                "details": jsonable(self.details)}


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
        return {"tpexplain_findings": 1, "meta": jsonable(self.meta),
                "claims": {c.id: c.to_dict() for c in self.claims}, "numbers": jsonable(self.numbers)}


# ---------------------------------------------------------------------------------------------------
# Statistics and verdicts

def finite_mean(xs) -> float:
    """Mean of the finite values (None and nan left out); nan when there are none."""
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def finite_median(xs) -> float:
    """Median of the finite values (None and nan left out); nan when there are none."""
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.median(xs)) if xs else float("nan")


def _verdict(measured: bool, ok: bool) -> str:
    return UNMEASURED if not measured else (HOLDS if ok else FAILS)


def all_claims(q: list[dict], num_layers: int, stats: dict, studies: list[dict], asked: int, rand,
               rhos: list[dict], window: int, stride: int) -> list[Claim]:
    """Every claim, in the report's order, from the query rows `q`, the map statistics, the hidden-keypoint
    studies, the randomisation result (None when not run) and the agreement rows."""
    return [_claim_activation_max(q), _claim_person(q), _claim_head(q), _claim_symmetric(q),
            _depth_claim(q, "distance_body", "mean attention distance", "finer_with_depth_distance", num_layers),
            _depth_claim(q, "entropy", "attention entropy", "finer_with_depth_entropy", num_layers),
            _claim_occluded(q), _claim_hidden(studies, asked), *map_claims(stats),
            _claim_randomisation(rand), _claim_agreement(rhos, window, stride)]


def numbers(q: list[dict], num_layers: int, rhos: list[dict]) -> dict:
    """The numbers behind the claims for findings.json: every query (rounded), region shares, layer means."""
    return {"queries": [compact(r) for r in q],
            "region_shares_by_type": region_table(q),
            "per_layer": {key: [finite_mean([r[key][i] for r in q]) for i in range(num_layers)]
                          for key in ("entropy", "distance_body", "distance_px")},
            "agreement": rhos}


def _claim_activation_max(q: list[dict]) -> Claim:
    vis = [r for r in q if r["v"] == 2]
    value = finite_mean([float(r["hit"]) for r in vis])
    per_type = {COCO_KEYPOINTS[k]: finite_mean([float(r["hit"]) for r in vis if r["k"] == k]) for k in range(17)}
    return Claim(
        "activation_max_on_keypoint", "1. The activation maximum is the keypoint",
        "Heatmap peaks land on the ground-truth keypoints.",
        f"PCK@{PCK_ALPHA:g} over visible keypoints (v=2): the share of predicted peaks within "
        f"{PCK_ALPHA:g} × the longer side of the person's ground-truth box from the ground-truth keypoint.",
        f"PCK@{PCK_ALPHA:g} ≥ {PCK_MIN:g} (most peaks on the keypoint); not measured with fewer than "
        f"{MIN_KEYPOINTS} visible keypoints.",
        value, _verdict(len(vis) >= MIN_KEYPOINTS, value >= PCK_MIN), "figures/activation_max.png",
        {"num_visible": len(vis), "pck_visible_by_type": per_type,
         "median_error_body": finite_median([r["error_norm"] for r in vis])})


def _claim_person(q: list[dict]) -> Claim:
    c = [r["concentration"] for r in q if r["concentration"] is not None]
    value = finite_median(c)
    return Claim(
        "dependency_on_person", "1. The activation maximum is the keypoint",
        "The last layer's dependency at the predicted peak concentrates on the person.",
        "Concentration index (m − a) / (1 − a) of the last layer's dependency map at each predicted keypoint, "
        "median over queries: m is the map's mass on the person (every body region: within r of a joint or "
        "bone, or inside the torso; r = a tenth of the person's size), a the person's share of the token grid "
        "(what a uniform map would put there). 0 = no more than uniform, 1 = all mass on the person.",
        f"median concentration ≥ {CONCENTRATION_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} queries.",
        value, _verdict(len(c) >= MIN_KEYPOINTS, value >= CONCENTRATION_MIN), "figures/dependency_on_person.png",
        {"num_queries": len(c), "mean_person_mass": finite_mean([1 - r["masses"]["background"] for r in q]),
         "mean_person_area": finite_mean([1 - r["areas"]["background"] for r in q]),
         "mean_concentration": finite_mean(c)})


def _claim_head(q: list[dict]) -> Claim:
    head = [r for r in q if r["k"] in HEAD]
    value = finite_mean([r["head_share"] for r in head])
    return Claim(
        "head_joints_on_head", "2. Dependencies differ by keypoint type",
        "Head joints (nose, eyes, ears) lean mostly on the head.",
        "Mean share of the last layer's dependency mass on the head (tokens within r of any labelled head "
        "joint) for queries at head joints.",
        f"mean head share ≥ {HEAD_SHARE_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} head queries.",
        value, _verdict(len(head) >= MIN_KEYPOINTS, value >= HEAD_SHARE_MIN), "figures/regions_by_type.png",
        {"num_queries": len(head), "mean_head_area": finite_mean([r["head_area"] for r in head]),
         "head_share_by_type": {COCO_KEYPOINTS[k]: finite_mean([r["head_share"] for r in q if r["k"] == k])
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
    per_layer = [finite_mean([r[key][i] for r in q]) for i in range(num_layers)]
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
         "mean_change_last_minus_first": finite_mean(diffs)})


def _claim_occluded(q: list[dict]) -> Claim:
    occ = [r for r in q if r["v"] == 1]
    vis = [r for r in q if r["v"] == 2]
    value = finite_mean([float(r["hit"]) for r in occ])
    vis_pck = finite_mean([float(r["hit"]) for r in vis])
    return Claim(
        "occluded_keypoints_found", "4. Occluded keypoints are still found",
        "Keypoints that are labelled but occluded (v=1) are still localised.",
        f"PCK@{PCK_ALPHA:g} over occluded keypoints (v=1), beside the same for visible ones.",
        f"occluded PCK@{PCK_ALPHA:g} ≥ {OCCLUDED_PCK_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} "
        "occluded keypoints.",
        value, _verdict(len(occ) >= MIN_KEYPOINTS, value >= OCCLUDED_PCK_MIN), "figures/occlusion.png",
        {"num_occluded": len(occ), "num_visible": len(vis), "pck_visible": vis_pck,
         "ratio_occluded_to_visible": value / vis_pck if vis_pck > 0 else float("nan"),
         "pck_occluded_by_type": {COCO_KEYPOINTS[k]: finite_mean([float(r["hit"]) for r in occ if r["k"] == k])
                                  for k in range(17)}})


def _claim_hidden(studies: list[dict], asked: int) -> Claim:
    shifts = [s["cue_shift"] for s in studies]
    neg, n, p = sign_test([-x for x in shifts])     # test "mostly positive"
    value = finite_mean(shifts)
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
         "mean_shift_by_region": {r: finite_mean([s["shift"][r] for s in studies]) for r in REGIONS},
         "still_found_after_hiding": finite_mean([float(s["found_after"]) for s in studies
                                                  if s["found_after"] is not None]),
         "median_displacement_norm": finite_median([s["displacement_norm"] for s in studies]),
         "studies": studies})


def map_statistics(maps: dict[int, dict[int, np.ndarray]]) -> dict:
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
                    others.append(pearson(m, (sums[j] - (mj if mj is not None else 0)) / n))
            r_own[k].append(pearson(m, own))
            r_other[k].append(finite_mean(others))
    return {"sums": sums, "counts": counts, "r_own": r_own, "r_other": r_other, "spread": spread}


def map_claims(stats: dict) -> list[Claim]:
    own = [x for k in stats["r_own"] for x in stats["r_own"][k]]
    pairs = [(a, b) for k in stats["r_own"] for a, b in zip(stats["r_own"][k], stats["r_other"][k])
             if np.isfinite(a) and np.isfinite(b)]
    measured = len(own) >= MIN_KEYPOINTS
    r_mean = finite_mean(own)
    common = float(np.mean([a > b for a, b in pairs])) if pairs else float("nan")
    by_type = {COCO_KEYPOINTS[k]: {"maps": stats["counts"][k], "spread_tv": finite_mean(stats["spread"][k]),
                                   "r_own": finite_mean(stats["r_own"][k]), "r_other": finite_mean(stats["r_other"][k])}
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
               "mean_spread_tv": finite_mean([x for v in stats["spread"].values() for x in v])}),
        Claim("dependencies_share_commonalities", section,
              "Maps of one keypoint type share a common pattern that sets them apart from other types.",
              f"{loo} Statistic: the share of maps that correlate more with their own type's mean map than "
              "(on average) with the other types' mean maps.",
              f"share ≥ {COMMON_FRACTION_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} maps.",
              common, _verdict(len(pairs) >= MIN_KEYPOINTS, common >= COMMON_FRACTION_MIN), "figures/mean_maps.png",
              {"maps": len(pairs), "mean_r_own": r_mean, "mean_r_other": finite_mean([b for _, b in pairs])}),
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
    value = finite_median([r["dependency"] for r in rhos])
    return Claim(
        "attention_agrees_with_occlusion", "Sanity check: attention vs occlusion sensitivity",
        "Where the last layer attends is where hiding the image hurts the prediction.",
        f"For each labelled keypoint of the occlusion subset, the occlusion-sensitivity map (a {window}-pixel "
        f"square slid over the crop with stride {stride}, filled with the mean colour; value = drop of the "
        "keypoint's heatmap at its clean peak, averaged per token) is compared with the last layer's "
        "dependency map by Spearman's rho over the token grid. Statistic: the median rho.",
        f"median rho ≥ {AGREEMENT_RHO_MIN:g}; not measured with fewer than {MIN_KEYPOINTS} keypoints.",
        value, _verdict(len(rhos) >= MIN_KEYPOINTS, value >= AGREEMENT_RHO_MIN), "figures/agreement.png",
        {"keypoints": len(rhos), "median_rho_first_layer": finite_median([r["first_layer"] for r in rhos]),
         "median_rho_rollout": finite_median([r["rollout"] for r in rhos]),
         "mean_rho": finite_mean([r["dependency"] for r in rhos])})


def region_table(q: list[dict]) -> dict:
    """Per keypoint type, the mean share of the last layer's dependency on each body region."""
    return {COCO_KEYPOINTS[k]: {r: finite_mean([x["masses"][r] for x in q if x["k"] == k]) for r in REGIONS}
            for k in range(17)}


def compact(r: dict) -> dict:
    """A query row with its floats rounded to 5 digits, for findings.json."""
    return {k: (round(v, 5) if isinstance(v, float) else
                [round(x, 5) for x in v] if isinstance(v, list) else
                {a: round(b, 5) for a, b in v.items()} if isinstance(v, dict) else v) for k, v in r.items()}


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


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
        return _num(x)
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    return x


