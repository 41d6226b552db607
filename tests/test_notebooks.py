"""The examples run top to bottom (so they can never rot), and the notebook objects display themselves."""
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


@pytest.fixture(scope="module")
def default_model_present():
    from tpexplain import zoo
    # the package ships the default model's weights; its absence is a packaging failure, not a reason to skip
    assert zoo.checkpoint_path("default") is not None, \
        f"the default model's weights are missing from {zoo.bundled_dir()}: the examples need the bundled default model"


def test_the_expected_examples_exist():
    assert {"quickstart.ipynb", "layer_depth.ipynb", "occlusion.ipynb", "findings.ipynb"} <= set(NOTEBOOKS)
    assert (EXAMPLES / "batch_figures.py").is_file()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, default_model_present, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    monkeypatch.setenv("OMP_NUM_THREADS", "1")          # the kernel shares the machine with other work
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert "image/png" in kinds, f"{name} shows no figure"
    if name == "quickstart.ipynb":
        assert "application/vnd.jupyter.widget-view+json" in kinds      # the explorer widget
        assert any("srcdoc" in o.get("data", {}).get("text/html", "") for o in outputs)   # the page, inline


def test_batch_script(default_model_present, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "person.jpg").write_bytes((EXAMPLES / "synthetic_person.jpg").read_bytes())
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(EXAMPLES / "batch_figures.py"), "--folder", str(images),
                          "--out", str(out), "--figures", "attention", "--jobs", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert '"input": "person.jpg"' in run.stdout and (out / "person_det1_attention.png").is_file()
    assert (out / "index.html").is_file()


def test_explorer_widget_answers_clicks():
    import torch

    import tpexplain
    from tpexplain.viz.widget import GAP, HEADER, Explorer
    torch.manual_seed(0)
    ex = tpexplain.load("default", weights="random").explain(EXAMPLES / "synthetic_person.jpg", flip=False)
    w = Explorer(ex, "l_ankle", scale=1.0)
    assert w.keypoint.value == "l_ankle" and "l_ankle" in w.info.value
    first = w.image.value
    # a click in the second panel, 30 px from its left and 40 px below its label
    w.click({"dataX": 192 + GAP + 30, "dataY": HEADER + 40})
    assert w.point == (30.0, 40.0) and w.keypoint.value is None
    assert (w.x.value, w.y.value) == (30, 40) and w.image.value != first
    assert f"token {ex.layout.token_at(30, 40)}" in w.info.value
    w.layer.value, w.head.value, w.kind.value = 1, 0, "affected"
    (m,) = w.maps()
    assert (m.layer, m.head, m.kind, m.query_crop) == (1, 0, "affected", (30.0, 40.0))
    w.select("r_wrist")
    assert w.point is None and w.maps()[0].keypoint == "r_wrist"
    assert "application/vnd.jupyter.widget-view+json" in w._repr_mimebundle_()


def test_explorer_widget_says_what_to_install(monkeypatch):
    from tpexplain.viz import widget
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match=r"tpexplain\[notebook\]"):
        widget.Explorer(None)
