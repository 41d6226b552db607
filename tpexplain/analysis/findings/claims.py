"""The claims: each one's statistic and criterion (constants in `criteria.py`), its bootstrap interval over
people, its value on the null baselines, and the verdict that follows.

Verdicts:
- "inconclusive (n too small)": fewer cases or people than `criteria.MIN_CASES` / `MIN_PEOPLE`;
- "does not hold": the whole interval fails the criterion;
- "inconclusive": the interval straddles the criterion, or it passes but overlaps a baseline's interval;
- "not specific to training": the interval passes, but a baseline's value passes too;
- "holds": the interval passes and lies apart from every baseline's interval, none of which passes;
- "not measured": no case at all (e.g. no occlusion people).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ...keypoints import COCO_KEYPOINTS, HEAD, PCK_ALPHA
from ..stats import bootstrap_weights, pearson, percentile_interval, weighted_mean, weighted_median
from . import criteria as C
from .measure import LIMB_JOINTS, jsonable

HOLDS, FAILS, UNMEASURED = "holds", "does not hold", "not measured"
INCONCLUSIVE, TOO_FEW, NOT_SPECIFIC = "inconclusive", "inconclusive (n too small)", "not specific to training"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, TOO_FEW, NOT_SPECIFIC, UNMEASURED)


# ---------------------------------------------------------------------------------------------------
# Results

@dataclass
class Estimate:
    """A statistic's value, its bootstrap interval over people, and how many cases and people it rests on."""

    value: float
    low: float
    high: float
    cases: int
    people: int

    def to_dict(self) -> dict:
        return jsonable({"value": self.value, "interval": [self.low, self.high], "cases": self.cases,
                         "people": self.people})


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
    interval: tuple[float, float] = (float("nan"), float("nan"))
    cases: int = 0
    people: int = 0
    baselines: dict = field(default_factory=dict)    # name → Estimate
    reason: str = ""
    threshold: float | None = None

    def to_dict(self) -> dict:
        return {"section": self.section, "statement": self.statement,
                "statistic": {"definition": self.statistic, "value": jsonable(self.value),
                              "interval": jsonable(list(self.interval)), "cases": self.cases, "people": self.people},
                "criterion": self.criterion, "verdict": self.verdict, "reason": self.reason,
                "baselines": {k: b.to_dict() for k, b in self.baselines.items()},
                "figure": self.figure, "details": jsonable(self.details)}


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
        return {"tpexplain_findings": 2, "meta": jsonable(self.meta),
                "claims": {c.id: c.to_dict() for c in self.claims}, "numbers": jsonable(self.numbers)}


# ---------------------------------------------------------------------------------------------------
# Tables: the per-person records as flat arrays, one row per case, each row knowing its person

def _f(x) -> float:
    return float("nan") if x is None else float(x)


def tables(records: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """Query, hidden-joint and agreement rows of `records` (one per person, in the set's order) as arrays."""
    q: dict[str, list] = {k: [] for k in ("person", "k", "v", "hit", "concentration", "head_share", "sym_obs",
                                          "sym_exp", "adj_obs", "adj_exp", "entropy_first", "entropy_last", "distance_first",
                                          "distance_last")}
    hidden: dict[str, list] = {"person": [], "cue_shift": [], "hit": []}
    agree: dict[str, list] = {"person": [], "rho": []}
    maps: dict[int, dict[int, np.ndarray]] = {}
    for i, rec in enumerate(records):
        for r in rec.get("queries", []):
            for key, val in (("person", i), ("k", r["k"]), ("v", r["v"]), ("hit", r["hit"]),
                             ("concentration", _f(r["concentration"])), ("head_share", r["head_share"]),
                             ("sym_obs", r["symmetric_observed"]), ("sym_exp", r["symmetric_expected"]),
                             ("adj_obs", r["adjacent_observed"]), ("adj_exp", r["adjacent_expected"]),
                             ("entropy_first", r["entropy"][0]), ("entropy_last", r["entropy"][-1]),
                             ("distance_first", r["distance_body"][0]), ("distance_last", r["distance_body"][-1])):
                q[key].append(val)
        for k, m in rec.get("maps", {}).items():
            maps.setdefault(int(k), {})[i] = np.asarray(m, np.float32)
        for s in rec.get("hidden", []):
            hidden["person"].append(i), hidden["cue_shift"].append(s["cue_shift"]), hidden["hit"].append(s["hit_before"])
        for a in rec.get("agreement", []):
            agree["person"].append(i), agree["rho"].append(_f(a["dependency"]))
    t = {name: {k: np.asarray(v, np.float64 if k not in ("person", "k", "v", "hit") else
                              (bool if k == "hit" else np.int64)) for k, v in d.items()}
         for name, d in (("queries", q), ("hidden", hidden), ("agreement", agree))}
    stats = map_statistics(maps)
    own, other = np.full(len(q["person"]), np.nan), np.full(len(q["person"]), np.nan)
    where = {(p, k): j for j, (p, k) in enumerate(zip(q["person"], q["k"]))}
    for k in stats["r_own"]:
        for p, a, b in zip(stats["people"][k], stats["r_own"][k], stats["r_other"][k]):
            own[where[(p, k)]], other[where[(p, k)]] = a, b
    t["queries"]["r_own"], t["queries"]["r_other"] = own, other
    t["map_stats"] = stats
    t["n_people"] = len(records)
    return t


def map_statistics(maps: dict[int, dict[int, np.ndarray]]) -> dict:
    """Per type: mean map, spread (total variation to the mean), and for every map its correlation with its
    own type's person-left-out mean and with the other types' person-left-out means."""
    sums = {k: sum(d.values()) for k, d in maps.items() if len(d) >= 2}
    counts = {k: len(maps[k]) for k in sums}
    r_own, r_other, spread, people = {}, {}, {}, {}
    for k in sums:
        mean = sums[k] / counts[k]
        spread[k] = [0.5 * float(np.abs(m - mean).sum()) for m in maps[k].values()]
        r_own[k], r_other[k], people[k] = [], [], list(maps[k])
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
            r_other[k].append(_finite_mean(others))
    return {"sums": sums, "counts": counts, "r_own": r_own, "r_other": r_other, "spread": spread, "people": people}


def _finite_mean(xs) -> float:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


# ---------------------------------------------------------------------------------------------------
# The claims' statistics, as functions of bootstrap weights over people (W: resamples x people)

def _w(t: dict, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
    return w[:, t["person"][rows]]


def _mean(key: str) -> Callable:
    return lambda t, rows, w: weighted_mean(_w(t, rows, w), t[key][rows])


def _median(key: str) -> Callable:
    return lambda t, rows, w: weighted_median(_w(t, rows, w), t[key][rows])


def _relative_fall(name: str) -> Callable:
    def stat(t, rows, w):
        first = weighted_mean(_w(t, rows, w), t[f"{name}_first"][rows])
        last = weighted_mean(_w(t, rows, w), t[f"{name}_last"][rows])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(first > 0, (first - last) / first, np.nan)
    return stat


def reliance(t: dict, rows: np.ndarray, w: np.ndarray, region: str = "sym") -> dict[int, np.ndarray]:
    """Per keypoint type: observed / distance-matched expected mass on `region`, pooled over the type's rows
    (nan where the type has fewer than MIN_PER_TYPE weighted queries)."""
    qw, k = _w(t, rows, w), t["k"][rows]
    obs, exp = t[f"{region}_obs"][rows], t[f"{region}_exp"][rows]
    out = {}
    for kk in np.unique(k):
        sel = k == kk
        cnt, o, e = qw[:, sel].sum(1), qw[:, sel] @ obs[sel], qw[:, sel] @ exp[sel]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[int(kk)] = np.where((cnt >= C.MIN_PER_TYPE) & (e > 0), o / np.where(e > 0, e, 1), np.nan)
    return out


def _limb_share(t, rows, w):
    per = [v for kk, v in reliance(t, rows, w).items() if kk in LIMB_JOINTS]
    if not per:
        return np.full(len(w), np.nan)
    p = np.array(per)
    valid = np.isfinite(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid.any(0), ((p > C.SRI_MIN) & valid).sum(0) / valid.sum(0), np.nan)


def _share_own_above_other(t, rows, w):
    return weighted_mean(_w(t, rows, w), (t["r_own"][rows] > t["r_other"][rows]).astype(float))


# ---------------------------------------------------------------------------------------------------
# The claims

@dataclass(frozen=True)
class Spec:
    """A claim as fixed before measuring: statement, statistic, criterion (op, threshold) and where its cases are."""

    id: str
    section: str
    statement: str
    statistic: str
    op: str                    # ">=", ">" or "<"
    threshold: float
    table: str                 # "queries", "hidden" or "agreement"
    rows: Callable             # table → boolean row mask
    stat: Callable             # (table, rows, weights) → one value per weight row
    figure: str | None = None
    split: bool = True         # also reported for correctly and wrongly predicted keypoints
    note: str = ""

    @property
    def criterion(self) -> str:
        return (f"{self.op} {self.threshold:g}{self.note}, with the whole {C.CONFIDENCE:.0%} interval on that "
                f"side; at least {C.MIN_CASES} cases from {C.MIN_PEOPLE} people")

    def passes(self, x) -> bool:
        x = float(x)
        if not np.isfinite(x):
            return False
        return {">=": x >= self.threshold, ">": x > self.threshold, "<": x < self.threshold}[self.op]


S1, S2, S3, S4, S5 = ("1. The activation maximum is the keypoint", "2. Dependencies differ by keypoint type",
                      "3. Attention becomes finer with depth", "4. Occluded keypoints are still found",
                      "5. Dependencies are image-specific, with statistical commonalities")
AT_GT = ("the last layer's dependency map (attention row, mean of heads) queried at the GROUND-TRUTH joint "
         "(the token TransPose's rule gives the labelled position)")
LOO = ("Maps are the last layer's dependency maps at the ground-truth joints, normalised to sum 1; a type's mean "
       "map leaves out the person whose map is compared (in the crop frame, part of what a type's maps share is "
       "where that joint usually sits in a person's box).")

SPECS = (
    Spec("activation_max_on_keypoint", S1, "Heatmap peaks land on the ground-truth keypoints.",
         f"PCK@{PCK_ALPHA:g} over visible keypoints (v=2): the share of predicted keypoints within {PCK_ALPHA:g} x "
         "the longer side of the person's box from the ground-truth keypoint.",
         ">=", C.PCK_MIN, "queries", lambda t: t["v"] == 2, _mean("hit"), "figures/activation_max.png", split=False),
    Spec("dependency_on_person", S1, "The last layer's dependency at the keypoint concentrates on the person.",
         f"Median over queries of the concentration index (m - a) / (1 - a) of {AT_GT}: m is the map's mass on "
         "the person (within r of a joint or bone, or inside the torso; r = a tenth of the person's size), a the "
         "person's share of the token grid (what a uniform map would put there). 0 = uniform, 1 = all on the person.",
         ">=", C.CONCENTRATION_MIN, "queries", lambda t: np.isfinite(t["concentration"]), _median("concentration"),
         "figures/dependency_on_person.png"),
    Spec("head_joints_on_head", S2, "Head joints (nose, eyes, ears) lean mostly on the head.",
         f"Mean share of the mass of {AT_GT} on the head (tokens within r of any labelled head joint), over "
         "queries at head joints.",
         ">=", C.HEAD_SHARE_MIN, "queries", lambda t: np.isin(t["k"], HEAD), _mean("head_share"),
         "figures/regions_by_type.png"),
    Spec("limb_joints_use_symmetric_joint", S2,
         f"Wrists, elbows, knees and ankles lean on their mirror joint: more than {C.SRI_MIN:g} x the attention "
         "distance alone gives it.",
         f"Mirror-reliance index per limb type: the mass of {AT_GT} on the mirror joint's region divided by the "
         "mass expected there from the map's distance profile (each such token gets the mean mass of the tokens "
         "outside the joint's and the mirror's regions at the same distance from the query), pooled over the "
         f"type's queries (a type needs {C.MIN_PER_TYPE}). A map that merely decays with distance scores 1. The "
         f"statistic is the share of the 8 limb types whose index exceeds {C.SRI_MIN:g}.",
         ">=", C.LIMB_TYPES_MIN, "queries", lambda t: np.isin(t["k"], LIMB_JOINTS), _limb_share,
         "figures/symmetric_reliance.png", note=f" (6 of 8 types with index > {C.SRI_MIN:g})"),
    Spec("finer_with_depth_distance", S3, "The mean attention distance falls from the first layer to the last.",
         f"Relative fall (first - last) / first of the mean over queries of the attention distance (person sizes) "
         f"of {AT_GT.replace('the last layer', 'each layer')}.",
         ">=", C.MIN_RELATIVE_FALL, "queries", lambda t: np.ones(len(t["k"]), bool), _relative_fall("distance"),
         "figures/depth.png"),
    Spec("finer_with_depth_entropy", S3, "The attention entropy falls from the first layer to the last.",
         "Relative fall (first - last) / first of the mean over queries of the entropy (nats) of "
         f"{AT_GT.replace('the last layer', 'each layer')}.",
         ">=", C.MIN_RELATIVE_FALL, "queries", lambda t: np.ones(len(t["k"]), bool), _relative_fall("entropy"),
         "figures/depth.png"),
    Spec("occluded_keypoints_found", S4, "Keypoints that are labelled but occluded (v=1) are still localised.",
         f"PCK@{PCK_ALPHA:g} over occluded keypoints (v=1).",
         ">=", C.OCCLUDED_PCK_MIN, "queries", lambda t: t["v"] == 1, _mean("hit"), "figures/occlusion.png",
         split=False),
    Spec("hidden_keypoint_uses_other_cues", S4, "When a keypoint is hidden, its dependency shifts onto other body cues.",
         "A visible limb joint is hidden at its GROUND-TRUTH position (a disc of radius r filled with the image's "
         "mean colour) and the last layer's dependency at the ground-truth joint is measured before and after. "
         "Statistic: the mean change of the share of mass on the other body cues (mirror joint, neighbours, head, "
         "rest of the body; regions of the ground-truth pose) over the hidden joints.",
         ">", C.CUE_SHIFT_MIN, "hidden", lambda t: np.isfinite(t["cue_shift"]), _mean("cue_shift"),
         "figures/occlusion.png"),
    Spec("dependencies_image_specific", S5, "Individual dependency maps differ from their keypoint type's mean map.",
         f"{LOO} Statistic: the mean Pearson r between a map and its type's mean map.",
         "<", C.SPECIFIC_R_MAX, "queries", lambda t: np.isfinite(t["r_own"]), _mean("r_own"),
         "figures/mean_maps.png"),
    Spec("dependencies_share_commonalities", S5,
         "Maps of one keypoint type share a common pattern that sets them apart from other types.",
         f"{LOO} Statistic: the share of maps that correlate more with their own type's mean map than (on "
         "average) with the other types' mean maps.",
         ">=", C.COMMON_FRACTION_MIN, "queries", lambda t: np.isfinite(t["r_own"]) & np.isfinite(t["r_other"]),
         _share_own_above_other, "figures/mean_maps.png"),
    Spec("attention_agrees_with_occlusion", "Sanity check: attention vs occlusion sensitivity",
         "Where the last layer attends is where hiding the image hurts the prediction.",
         "For each labelled keypoint of the occlusion people, the occlusion-sensitivity map (a square slid over the "
         "crop, filled with the mean colour; value = drop of the keypoint's heatmap at its clean peak, per token) "
         "against the last layer's dependency map at the PREDICTED keypoint (both are about the prediction), by "
         "Spearman's rho over the token grid. Statistic: the median rho.",
         ">=", C.AGREEMENT_RHO_MIN, "agreement", lambda t: np.isfinite(t["rho"]), _median("rho"),
         "figures/agreement.png", split=False),
)
MODEL, BASELINE_NAMES = "model", ("random", "peaked")


def estimate(spec: Spec, t: dict, w: np.ndarray, extra: np.ndarray | None = None) -> Estimate:
    """The statistic on all people (weights of one) and its percentile interval over the resamples `w`."""
    table = t[spec.table]
    rows = spec.rows(table) if len(table["person"]) else np.zeros(0, bool)
    if extra is not None:
        rows = rows & extra
    people = len(np.unique(table["person"][rows])) if rows.any() else 0
    if not rows.any():
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    value = float(spec.stat(table, rows, np.ones((1, t["n_people"])))[0])
    low, high = percentile_interval(spec.stat(table, rows, w), value, C.CONFIDENCE)
    return Estimate(value, low, high, int(rows.sum()), people)


def verdict(spec: Spec, est: Estimate, baselines: dict[str, Estimate]) -> tuple[str, str]:
    """(verdict, reason) from the interval and the baselines (see the module docstring)."""
    if est.cases == 0:
        return UNMEASURED, "no cases"
    if est.cases < C.MIN_CASES or est.people < C.MIN_PEOPLE:
        return TOO_FEW, f"{est.cases} cases from {est.people} people"
    lo, hi = spec.passes(est.low), spec.passes(est.high)
    if not lo and not hi:
        return FAILS, "the whole interval fails the criterion"
    if lo != hi:
        return INCONCLUSIVE, "the interval straddles the criterion"
    passing = [n for n, b in baselines.items() if spec.passes(b.value)]
    if passing:
        return NOT_SPECIFIC, f"the {' and '.join(passing)} baseline{'s' if len(passing) > 1 else ''} also pass{'es' if len(passing) == 1 else ''}"
    if not baselines:
        return INCONCLUSIVE, "no baseline to compare with"
    close = [n for n, b in baselines.items()
             if not np.isfinite(b.low) or (b.low <= est.high and est.low <= b.high)]
    if close:
        return INCONCLUSIVE, f"within the spread of the {' and '.join(close)} baseline"
    return HOLDS, "the interval passes and lies apart from the baselines'"


def evaluate(measurements: dict[str, list[dict]], resamples: int = C.BOOTSTRAP_RESAMPLES,
             seed: int = 0) -> tuple[list[Claim], dict]:
    """Every claim from the per-person records of the model (`measurements["model"]`) and of the baselines
    (the other keys), with one set of bootstrap weights over the people for all of them (people are the same,
    in the same order). Returns the claims and the model's tables."""
    tabs = {name: tables(recs) for name, recs in measurements.items()}
    t = tabs[MODEL]
    w = bootstrap_weights(max(t["n_people"], 1), resamples, seed)
    out = []
    for spec in SPECS:
        est = estimate(spec, t, w)
        base = {n: estimate(spec, tb, w) for n, tb in tabs.items() if n != MODEL}
        v, reason = verdict(spec, est, base)
        details = {}
        if spec.split and len(t[spec.table]["person"]):
            hit = t[spec.table]["hit"]
            details["correct_predictions"] = estimate(spec, t, w, hit).to_dict()
            details["wrong_predictions"] = estimate(spec, t, w, ~hit).to_dict()
        out.append(Claim(spec.id, spec.section, spec.statement, spec.statistic, spec.criterion, est.value, v,
                         spec.figure, details, (est.low, est.high), est.cases, est.people, base, reason,
                         spec.threshold))
    return out, t


def type_table(t: dict) -> dict:
    """Per keypoint type: PCK (visible, occluded), head share, mirror and neighbour reliance, map r own/other."""
    q = t["queries"]
    one = np.ones((1, t["n_people"]))
    everything = np.ones(len(q["k"]), bool)
    sym = reliance(q, everything, one) if len(q["k"]) else {}
    adj = reliance(q, everything, one, "adj") if len(q["k"]) else {}
    out = {}
    for k, name in enumerate(COCO_KEYPOINTS):
        sel = q["k"] == k
        out[name] = {"queries": int(sel.sum()),
                     "pck_visible": _finite_mean(q["hit"][sel & (q["v"] == 2)].astype(float)),
                     "pck_occluded": _finite_mean(q["hit"][sel & (q["v"] == 1)].astype(float)),
                     "head_share": _finite_mean(q["head_share"][sel]),
                     "mirror_reliance": float(sym[k][0]) if k in sym else float("nan"),
                     "neighbour_reliance": float(adj[k][0]) if k in adj else float("nan"),
                     "r_own": _finite_mean(q["r_own"][sel]), "r_other": _finite_mean(q["r_other"][sel])}
    return out
