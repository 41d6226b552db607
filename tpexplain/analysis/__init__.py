"""Analyses of an `Explanation` (or of a model and an image): pure functions returning data and figures.

The findings report lives in `tpexplain.analysis.findings` (`findings`, `synthetic_findings`)."""
from .depth import (LayerStudy, attention_entropy, default_radius, layer_metrics, layer_study, mass_within,
                    mean_attention_distance, person_size)
from .hiding import hide, part_region
from .occlusion import OcclusionStudy, occlusion_study, symmetric_study
from .regions import REGIONS, region_masks, region_masses
from .rollout import rollout
from .sanity import attention_occlusion_agreement, model_randomisation
from .sensitivity import SensitivityMap, occlusion_sensitivity

__all__ = ["attention_entropy", "mean_attention_distance", "mass_within", "person_size", "default_radius",
           "layer_metrics", "layer_study", "LayerStudy", "region_masks", "region_masses", "REGIONS", "hide",
           "part_region", "occlusion_study", "OcclusionStudy", "occlusion_sensitivity", "SensitivityMap",
           "symmetric_study", "rollout", "model_randomisation", "attention_occlusion_agreement"]
