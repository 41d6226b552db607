"""Training and evaluation commands on synthetic data, run for real at a small size."""
import subprocess
import sys

import torch

from tpexplain import zoo
from tpexplain.data import SyntheticPersons
from tpexplain.train import joints_mse, train


def _held_out_loss(model, batch):
    model.eval()
    with torch.no_grad():
        x, target, weight = batch
        return joints_mse(model(x), target, weight).item()


def test_default_recipe_lowers_the_loss(tmp_path):
    data = SyntheticPersons(16, seed=123, train=False)
    batch = [torch.stack(t) for t in zip(*[data[i] for i in range(16)])]
    torch.manual_seed(0)
    before = _held_out_loss(zoo.build("default"), batch)
    # the recipe of the manifest's command (Adam 1e-3, cosine), shortened: 60 iterations of 8 people
    summary = train("default", tmp_path / "run", iters=60, batch_size=8, lr=1e-3, warmup=0, seed=0, workers=0,
                    save_every=30, export=tmp_path / "w.pth", bf16=False, log=lambda m: None)
    assert summary["step"] == 60
    trained = zoo.build("default")
    trained.load_state_dict(torch.load(tmp_path / "w.pth", weights_only=True))
    after = _held_out_loss(trained, batch)
    # early heatmap training moves slowly off the all-zero plateau; deterministic on CPU, so a 2% drop
    # on held-out people is a real signal (measured: 3.5%)
    assert after < 0.98 * before, (before, after)
    # resuming continues from the saved step instead of starting again
    more = train("default", tmp_path / "run", iters=62, batch_size=8, lr=1e-3, warmup=0, seed=0, workers=0,
                 resume=True, log=lambda m: None)
    assert more["step"] == 62


def test_synth_then_eval_prints_ap(tmp_path):
    d = tmp_path / "synth"
    r = subprocess.run([sys.executable, "-m", "tpexplain.cli", "synth", "--n", "3", "--seed", "4242", "--out", d],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "tpexplain.cli", "eval", "--coco", d / "annotations.json",
                        "--images", d / "images", "--no-flip"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("AP=") and 0.0 <= float(last[3:]) <= 1.0
    assert "Average Precision" in r.stdout and "PCK" in r.stdout
