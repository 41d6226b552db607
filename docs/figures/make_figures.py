"""Re-make the figures docs/usage.md shows, on a crowded COCO photo with its ground truth and on the synthetic example.

    python docs/figures/make_figures.py          # about a minute on one CPU core; writes docs/figures/*.png

The person, ground truth and titles are set as the CLI sets them with `--coco ANN --person ID`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).resolve().parent
COCO = ROOT / "tests/data/coco_mini"
PHOTO, PERSON = COCO / "000000197388.jpg", 437295     # five skiers; the one in front-centre
DPI = 100                                            # small files for the docs; the CLI's default is 150


def main() -> None:
    import numpy as np

    from tpexplain.analysis.depth import layer_study
    from tpexplain.analysis.sensitivity import occlusion_sensitivity
    from tpexplain.api import load
    from tpexplain.figures import save_figure

    pm = load("default")
    ann = next(a for a in json.loads((COCO / "test_coco.json").read_text())["annotations"] if a["id"] == PERSON)
    box = tuple(ann["bbox"])

    def who(ex):
        ex.meta.update(image=PHOTO.name, person=f"annotation {PERSON}", model="default")
        ex.ground_truth = np.array(ann["keypoints"], float).reshape(-1, 3)
        return ex

    ex = who(pm.explain(PHOTO, bbox=box))
    figures = {
        "attention_ground_truth.png": ex.dependency("l_ankle").figure(),
        "grid_image_shared.png": ex.grid(None, None, where="image", scale="shared"),
        "layers_all.png": layer_study(ex, "all").figure(),
    }
    sm = occlusion_sensitivity(pm, PHOTO, bbox=box, window=48, stride=24, keypoints=["l_wrist", "nose", "l_knee"])
    who(sm.explanation)
    figures["sweep_diverging.png"] = sm.figure()
    synthetic = pm.explain(ROOT / "examples/synthetic_person.jpg")
    synthetic.meta.update(image="synthetic_person.jpg", person="whole image", model="default")
    figures["synthetic_layers.png"] = layer_study(synthetic, ["l_wrist", "r_knee", "nose"]).figure(scale="panel")
    for name, fig in figures.items():
        print(save_figure(fig, OUT / name, dpi=DPI, force=True))


if __name__ == "__main__":
    main()
