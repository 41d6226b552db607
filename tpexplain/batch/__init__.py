"""Figures for many people at once: every core, a progress bar, resumable, one bad image never stops a run.

    items = coco_items("person_keypoints_val2017.json", "val2017/")
    summary = run_batch(items, ["attention"], "figs/", jobs=4)

Each person is one task: its image is read and explained once, then every figure kind asked for is drawn
from that one Explanation. Workers are separate processes (spawned, one torch thread each) that load the
model once; a worker that dies (killed, out of memory) costs only the person it held, which is tried again
on a fresh worker (twice at most) while the others go on. Outputs are written atomically, so a figure on
disk is always whole; the manifest (JSON lines, one row per output) records what was made for which person
and box, with which options, and the size and SHA-256 of the file; with annotations, each person's OKS
and PCK against its ground truth (drawn in its figures); and every image or annotation not explained, with
why. An output counts as complete when its row says "ok" for the same person, box, ground truth, options
and weights and the file on disk is still that file. A re-run therefore does only what is missing, changed
or failed.

Modules: inputs (who to explain), options (what to draw), manifest (what was made; resuming), workers
(the process pool), gallery (index.html), runner (run_batch).
"""
from .gallery import INDEX, gallery_html
from .inputs import IMAGE_SUFFIXES, Item, Items, Skip, Truth, coco_items, folder_items
from .manifest import MANIFEST, checkpoint_fingerprint, is_complete, output_name, read_manifest
from .options import FIGURE_KINDS, FigureOptions
from .runner import BatchSummary, available_cores, run_batch
from .workers import MAX_RETRIES

__all__ = ["FIGURE_KINDS", "IMAGE_SUFFIXES", "INDEX", "MANIFEST", "MAX_RETRIES", "BatchSummary", "FigureOptions",
           "Item", "Items", "Skip", "Truth", "available_cores", "checkpoint_fingerprint", "coco_items", "folder_items",
           "gallery_html", "is_complete", "output_name", "read_manifest", "run_batch"]
