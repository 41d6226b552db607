import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"
if not DATA.exists():  # CI clones the repo with shared/ beside it
    DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_mini"
SKIER = DATA / "000000000785.jpg"
SKIER_BOX = "280.79,44.73,218.7,346.68"
REFERENCE = DATA.parent.parent / "reference"


@pytest.fixture(scope="session")
def coco_dir() -> Path:
    assert DATA.exists(), f"shared test data not found at {DATA}"
    return DATA


@pytest.fixture(scope="session")
def tp_r_a3_weights(tmp_path_factory) -> Path:
    """A checkpoint saved from our own TP-R-A3 with seeded random weights."""
    from tpexplain import zoo
    torch.manual_seed(1)
    model = zoo.build("tp-r-a3")
    path = tmp_path_factory.mktemp("ckpt") / "tp_r_a3.pth"
    torch.save(model.state_dict(), path)
    return path
