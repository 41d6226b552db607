"""The explorer page: self-contained, compact, faithful to the recorded attention, and alive in a real browser."""
import base64
import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import tpexplain
from tpexplain.cli import main
from tpexplain.transforms import apply_affine
from tpexplain.viz.explore import explore_page, explorer_data, explorer_html

from chromium_driver import Browser, find_chromium

BOX = (280.79, 44.73, 218.7, 346.68)


@pytest.fixture(scope="module")
def ex(coco_dir):
    torch.manual_seed(0)
    pm = tpexplain.load("default", weights="random")
    return pm.explain(coco_dir / "000000000785.jpg", bbox=BOX, flip=False)


def _decode(layer: dict, queries: int) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(layer["data"]), np.uint8).reshape(queries, -1)
    s = np.frombuffer(base64.b64decode(layer["scale"]), "<f4")
    return q.astype(np.float32) / 255 * s[:, None]


def test_stored_rows_are_the_dependency_maps(ex):
    data = explorer_data(ex)
    gh, gw = ex.layout.grid
    assert data["step"] == 1 and data["pool"] == 1 and len(data["layers"]) == ex.num_layers
    for layer in (0, ex.num_layers - 1):
        rows = _decode(data["layers"][layer], gh * gw)
        for x, y in ((20.0, 30.0), (100.0, 200.0)):
            token = ex.layout.token_at(x, y)
            want = ex.dependency(point=(x, y), layer=layer).values.ravel()
            assert np.abs(rows[token] - want).max() <= want.max() / 255 * 0.51 + 1e-9


@pytest.fixture(scope="module")
def ex_split(ex):
    """`ex` with l_wrist predicted at heatmap (11.85, 3.9): the official rule queries token (2, 5), the token
    under the keypoint in the crop is (1, 6) (as in tests/test_fidelity.py)."""
    k = ex.keypoint("l_wrist")
    hm, crop = ex.keypoints_heatmap.copy(), ex.keypoints_crop.copy()
    hm[k] = (11.85, 3.9)
    crop[k] = apply_affine(apply_affine(hm[k], ex.crop.from_heatmap), ex.crop.to_crop)
    return dataclasses.replace(ex, keypoints_heatmap=hm, keypoints_crop=crop)


def test_keypoints_query_the_token_of_the_chosen_convention(ex_split):
    e = ex_split
    for query, cell in (("official", (2, 5)), ("geometric", (1, 6))):
        data = explorer_data(e, keypoints=["l_wrist", "nose"], query=query)
        wrist, nose = data["keypoints"]
        assert data["query"] == query and (wrist["row"], wrist["col"]) == cell
        info = e.query_info("nose", query=query)
        assert (nose["row"], nose["col"]) == (info["row"], info["col"])
    assert explorer_data(dataclasses.replace(e, query_convention="geometric"))["query"] == "geometric"
    assert "official query" in explorer_html(e) and "geometric query" in explorer_html(e, query="geometric")


def test_large_grids_are_subsampled_and_say_so(ex):
    data = explorer_data(ex, max_queries=200, max_bytes=100_000)
    assert data["step"] == 2 and len(data["queryRows"]) == 16 and len(data["queryCols"]) == 12
    assert data["pool"] > 1
    page = explorer_html(ex, max_queries=200, max_bytes=100_000)
    assert "queries stored every 2 tokens" in page and "keys summed over" in page


def test_page_is_self_contained(ex):
    page = explore_page(ex).html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)     # no network asset
    assert "default-src 'none'" in page
    payload = page[page.index("const D = ") + 10: page.index(";\nfunction bytes")]
    data = json.loads(payload)
    assert data["image"].startswith("data:image/png;base64,")
    assert len(page) < 4_000_000                                              # 768 tokens x 4 layers


def test_explore_command(coco_dir, tmp_path):
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["explore", str(coco_dir / "000000000785.jpg"), "--bbox",
                                       ",".join(map(str, BOX)), "--weights", "random", "-k", "l_ankle,r_wrist",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 100_000 and '"name":"r_wrist"' in out.read_text()
    assert '"query":"official"' in out.read_text()
    result = CliRunner().invoke(main, ["explore", str(coco_dir / "000000000785.jpg"), "--bbox",
                                       ",".join(map(str, BOX)), "--weights", "random", "-k", "l_ankle",
                                       "--query", "geometric", "-o", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert '"query":"geometric"' in out.read_text()
    result = CliRunner().invoke(main, ["explore", str(coco_dir / "missing.jpg"), "--weights", "random"])
    assert result.exit_code == 1 and "image not found" in result.output



def test_explore_coco_names_the_person_and_carries_the_ground_truth(coco_dir, tmp_path):
    out = tmp_path / "gt.html"
    result = CliRunner().invoke(main, ["explore", str(coco_dir / "000000196141.jpg"), "--coco",
                                       str(coco_dir / "test_coco.json"), "--person", "2", "--weights", "random",
                                       "--no-flip", "-k", "l_ankle", "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    data = json.loads(page[page.index("const D = ") + 10: page.index(";\nfunction bytes")])
    heading = re.search(r"<h1>(.*)</h1>", page).group(1)
    assert heading.startswith("000000196141.jpg · annotation ") and "default (random weights)" in heading
    assert data["about"]["person"] in heading and data["about"]["oks"] is not None
    gt = np.array(data["groundTruth"])
    assert gt.shape == (17, 3) and gt[:, 2].sum() > 0 and "ground truth dashed" in page
    assert "drawPose" in page and "D.groundTruth" in page


CHECKSUM = """(() => {const c = document.getElementById('layer%d');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0; for (let i = 0; i < d.length; i += 3) s = (s * 31 + d[i]) %% 1000000007; return s;})()"""


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_page_reacts_to_clicks_in_chromium(ex, tmp_path):
    page = tmp_path / "page.html"
    explore_page(ex, keypoints=["l_ankle", "r_wrist"]).save(page)
    browser = Browser(find_chromium())
    try:
        browser.open(page.as_uri())
        browser.wait_for("window.tpxReady === true")
        assert browser.evaluate("document.body.dataset.keypoint") == "l_ankle"
        layers = ex.num_layers
        before = [browser.evaluate(CHECKSUM % i) for i in range(layers)]
        left, top, width, height = browser.evaluate(
            "(() => {const r = document.getElementById('layer0').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height];})()")
        assert width > 100 and height > 100

        browser.click(left + 20, top + 30)                    # a real mouse click on the first layer's image
        assert browser.evaluate("document.body.dataset.keypoint") == ""
        token = ex.layout.token_at(20 * 192 / width, 30 * 256 / height)
        assert int(browser.evaluate("document.body.dataset.query")) == token
        after = [browser.evaluate(CHECKSUM % i) for i in range(layers)]
        assert all(a != b for a, b in zip(before, after))      # every layer's map was redrawn

        browser.click(left + width - 30, top + height - 40)   # another point: the maps change again
        again = [browser.evaluate(CHECKSUM % i) for i in range(layers)]
        assert all(a != b for a, b in zip(after, again))
        assert "token row" in browser.evaluate("document.getElementById('info').textContent")

        # the keypoint list: clicking an entry selects that keypoint's query
        x, y = browser.evaluate("(() => {const r = document.querySelectorAll('#kps div')[1]"
                                ".getBoundingClientRect(); return [r.left + 5, r.top + 5];})()")
        browser.click(x, y)
        assert browser.evaluate("document.body.dataset.keypoint") == "r_wrist"
    finally:
        browser.close()


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt-get install chromium)")
@pytest.mark.parametrize("query, cell", [("official", (2, 5)), ("geometric", (1, 6))])
def test_page_queries_the_keypoints_token_in_chromium(ex_split, query, cell, tmp_path):
    page = tmp_path / "page.html"
    explore_page(ex_split, keypoints=["l_wrist"], query=query).save(page)
    gw = ex_split.layout.grid[1]
    browser = Browser(find_chromium())
    try:
        browser.open(page.as_uri())
        browser.wait_for("window.tpxReady === true")
        assert browser.evaluate("document.body.dataset.keypoint") == "l_wrist"
        assert browser.evaluate("document.body.dataset.token") == f"{cell[0]},{cell[1]}"
        assert int(browser.evaluate("document.body.dataset.query")) == cell[0] * gw + cell[1]
        assert f"{query} query: token row {cell[0]} col {cell[1]}" in browser.evaluate(
            "document.getElementById('info').textContent")
    finally:
        browser.close()
