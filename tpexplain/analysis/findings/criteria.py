"""Every constant a findings verdict depends on, in one place, each with the reason for its value.

The report prints this table before any result. Changing a value is a commit of its own that says why,
made before re-running: a criterion is never adjusted to a model's results.
"""
from __future__ import annotations

# ---------------------------------------------------------------------------------------------------
# Criteria of the claims (what the statistic must reach)

PCK_MIN = 0.5              # 1a
CONCENTRATION_MIN = 0.5    # 1b
HEAD_SHARE_MIN = 0.5       # 2a
SRI_MIN = 1.1              # 2b, per limb type
LIMB_TYPES_MIN = 0.75      # 2b, share of limb types
MIN_RELATIVE_FALL = 0.1    # 3a, 3b
OCCLUDED_PCK_MIN = 0.5     # 4a
CUE_SHIFT_MIN = 0.0        # 4b
SPECIFIC_R_MAX = 0.9       # 5a
COMMON_FRACTION_MIN = 0.75  # 5b
AGREEMENT_RHO_MIN = 0.3    # S2

# ---------------------------------------------------------------------------------------------------
# Sample sizes and uncertainty

MIN_PEOPLE = 10            # fewer people: "inconclusive (n too small)"
MIN_CASES = 10             # fewer cases (queries, hidden joints, keypoints) than this: the same
MIN_PER_TYPE = 3           # 2b: a limb type's index needs this many queries
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95

# ---------------------------------------------------------------------------------------------------
# Baselines

CALIBRATION_PEOPLE = 8     # people whose attention entropy the peaked baseline is matched on
BASELINE_SEED_OFFSET = 1   # random baseline: seed + 1 (`load(weights="random")` uses seed 0)

REASONS: dict[str, tuple[float, str]] = {
    "PCK_MIN": (PCK_MIN, "1a: 'the activation maximum is the keypoint' means most peaks land on it (PCK@0.1)"),
    "CONCENTRATION_MIN": (CONCENTRATION_MIN, "1b: at least half of the mass a uniform map would put off the "
                                             "person is moved onto the person"),
    "HEAD_SHARE_MIN": (HEAD_SHARE_MIN, "2a: 'mostly on the head' is at least half of the mass"),
    "SRI_MIN": (SRI_MIN, "2b: a limb type leans on its mirror joint when the mirror region gets at least 10% "
                         "more mass than distance alone gives (the same 10% materiality margin as 3a/3b; a "
                         "random-weights model scored 1.03-1.06, which 'index > 1' let pass)"),
    "LIMB_TYPES_MIN": (LIMB_TYPES_MIN, "2b: the paper says limb joints in general: 6 of the 8 limb types"),
    "MIN_RELATIVE_FALL": (MIN_RELATIVE_FALL, "3a/3b: 'falls' means by at least a tenth of the first layer's "
                                             "value; a consistent but negligible drift is not finer attention"),
    "OCCLUDED_PCK_MIN": (OCCLUDED_PCK_MIN, "4a: 'still found' means most occluded keypoints are found"),
    "CUE_SHIFT_MIN": (CUE_SHIFT_MIN, "4b: the share on the other body cues rises (> 0) when the joint is hidden"),
    "SPECIFIC_R_MAX": (SPECIFIC_R_MAX, "5a: the type's mean map explains under 81% of an individual map's "
                                       "variance (r < 0.9)"),
    "COMMON_FRACTION_MIN": (COMMON_FRACTION_MIN, "5b: 3 in 4 maps resemble their own type's mean more than "
                                                 "the other types' means"),
    "AGREEMENT_RHO_MIN": (AGREEMENT_RHO_MIN, "S2: 'agree' is at least a moderate rank correlation (0.3)"),
    "MIN_PEOPLE": (MIN_PEOPLE, "people are the independent cases; a bootstrap over fewer than 10 people "
                               "underestimates the spread"),
    "MIN_CASES": (MIN_CASES, "a share or mean over fewer than 10 cases moves by 0.1 with a single case"),
    "MIN_PER_TYPE": (MIN_PER_TYPE, "2b: a pooled ratio over fewer than 3 queries is one person's accident"),
    "BOOTSTRAP_RESAMPLES": (BOOTSTRAP_RESAMPLES, "enough resamples for stable 2.5% and 97.5% percentiles"),
    "CONFIDENCE": (CONFIDENCE, "a verdict needs the whole 95% interval on one side of the criterion"),
    "CALIBRATION_PEOPLE": (CALIBRATION_PEOPLE, "the peaked baseline's attention scale is fitted on this many "
                                               "people (a search of forward passes; more changes the scale little)"),
}
