"""tpexplain: see why a transformer pose estimator put a keypoint where it did.

`import tpexplain` is cheap: torch and matplotlib load when a name below is first used.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"

# public name -> module that defines it (imported on first use, PEP 562)
_EXPORTS = {
    "load": "api", "PoseModel": "api", "detect_people": "api",
    "Explanation": "explanation", "AttentionMap": "explanation",
    "record_attention": "record", "LayerAttention": "record",
    "TokenLayout": "layout",
    "COCO_KEYPOINTS": "keypoints", "keypoint_index": "keypoints",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .api import PoseModel, detect_people, load
    from .explanation import AttentionMap, Explanation
    from .keypoints import COCO_KEYPOINTS, keypoint_index
    from .layout import TokenLayout
    from .record import LayerAttention, record_attention


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tpexplain' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
