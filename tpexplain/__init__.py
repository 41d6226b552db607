"""tpexplain: see why a transformer pose estimator put a keypoint where it did."""
from .api import PoseModel, load
from .explanation import AttentionMap, Explanation
from .keypoints import COCO_KEYPOINTS, keypoint_index
from .layout import TokenLayout
from .record import LayerAttention, record_attention

__all__ = ["load", "PoseModel", "Explanation", "AttentionMap", "record_attention", "LayerAttention",
           "TokenLayout", "COCO_KEYPOINTS", "keypoint_index"]
__version__ = "0.1.0"
