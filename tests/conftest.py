import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Everything the tests read lives in tests/data (see its README for sources and licences).
TEST_DATA = Path(__file__).resolve().parent / "data"
DATA = TEST_DATA / "coco_mini"
SKIER = DATA / "000000000785.jpg"
SKIER_BOX = "280.79,44.73,218.7,346.68"
KEYS = TEST_DATA / "keys"    # official state-dict keys and shapes, one JSON per variant


@pytest.fixture(scope="session")
def coco_dir() -> Path:
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


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory) -> Path:
    """The default architecture with seeded random weights: the real checkpoint path, fast and stable."""
    from tpexplain import zoo
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "default_random.pth"
    torch.save(zoo.build("default").state_dict(), path)
    return path
