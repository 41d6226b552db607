"""The model zoo: the registry of known models, checkpoint loading (strict, pickle-free) and downloads."""
from .registry import (ARCHITECTURES, build, bundled_dir, cache_dir, checkpoint_path, checkpoints_dir, entry,
                       keypoint_names, manifest, missing_weights_message, search_dirs)

__all__ = ["ARCHITECTURES", "build", "bundled_dir", "cache_dir", "checkpoint_path", "checkpoints_dir", "entry",
           "keypoint_names", "manifest", "missing_weights_message", "search_dirs"]
