"""The comparison logic of bench/compare_revisions.py (bench/compare_outputs.py) on small files made here; the
script itself needs git history and minutes."""
import base64
import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "compare_outputs", Path(__file__).resolve().parents[1] / "bench" / "compare_outputs.py")
cr = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cr   # dataclasses look their module up there
_spec.loader.exec_module(cr)


def _png(path: Path, img: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), img)
    return path


def test_png_pair_differing_in_one_pixel(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    other = img.copy()
    other[5, 7, 1] = (int(img[5, 7, 1]) + 3) % 256
    a, b = _png(tmp_path / "a.png", img), _png(tmp_path / "b.png", other)
    same = cr.compare_file(a, _png(tmp_path / "c.png", img.copy()))
    assert same.identical and same.compared == 600
    diff = cr.compare_file(a, b)
    assert not diff.identical
    assert diff.differing == 1 and diff.compared == 600
    assert diff.max_abs == abs(int(other[5, 7, 1]) - int(img[5, 7, 1]))
    assert "1/600 pixels differ" in diff.summary() and "x 7-7, y 5-5 of 30x20" in diff.summary()


def test_images_of_different_size_differ(tmp_path):
    a = _png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    b = _png(tmp_path / "b.png", np.zeros((4, 5), np.uint8))
    diff = cr.compare_file(a, b)
    assert not diff.identical and not diff.within(1.0) and "size" in diff.other[0]


def test_json_exact_rounding_and_real_differences(tmp_path):
    base = {"a": 0.123456789, "b": [1, 2.5, "x"], "timings": {"read": 0.1}, "path": "/tmp/x/out.png"}
    (tmp_path / "base.json").write_text(json.dumps(base))
    # timings and paths are not outputs: they may differ
    (tmp_path / "same.json").write_text(json.dumps({**base, "timings": {"read": 9.0}, "path": "/other/out.png"}))
    assert cr.compare_file(tmp_path / "base.json", tmp_path / "same.json").identical

    (tmp_path / "tiny.json").write_text(json.dumps({**base, "a": 0.12345679}))   # ~1e-8 relative
    tiny = cr.compare_file(tmp_path / "base.json", tmp_path / "tiny.json")
    assert not tiny.identical and tiny.differing == 1 and tiny.compared == 3
    assert tiny.max_abs == pytest.approx(1e-9, rel=1e-3)
    assert tiny.max_rel == pytest.approx(1e-9 / 0.12345679, rel=1e-3)
    assert tiny.within(1e-6) and not tiny.within(0)
    assert "within 1e-6 rel" in tiny.summary()

    (tmp_path / "real.json").write_text(json.dumps({**base, "b": [1, 2.75, "y"]}))
    real = cr.compare_file(tmp_path / "base.json", tmp_path / "real.json")
    assert real.max_rel == pytest.approx(0.25 / 2.75) and not real.within(1e-6)
    assert real.other == ["$.b[2]: 'x' vs 'y'"]


def test_printed_last_digit(tmp_path):
    """0.1234 vs 0.1235 is one unit of the last printed digit (a rounding flip); 0.1234 vs 0.1236 is not."""
    for name, value in (("a", "0.1234"), ("b", "0.1235"), ("c", "0.1236")):
        (tmp_path / f"{name}.json").write_text(f'{{"v": {value}, "n": 3}}')
    flip = cr.compare_file(tmp_path / "a.json", tmp_path / "b.json")
    assert flip.differing == 1 and flip.beyond_digit == 0 and "last printed digit only" in flip.summary()
    real = cr.compare_file(tmp_path / "a.json", tmp_path / "c.json")
    assert real.beyond_digit == 1


def test_json_structure_and_jsonl(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"k": 1, "x": 2.0}\n{"k": 2}\n')
    (tmp_path / "b.jsonl").write_text('{"k": 1, "x": 2.0}\n{"k": 2, "extra": true}\n')
    diff = cr.compare_file(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert diff.other == ["$[1].extra only in head"]
    (tmp_path / "c.jsonl").write_text('{"x": 2.0, "k": 1}\n{"k": 2}\n')   # key order is not a difference
    same = cr.compare_file(tmp_path / "a.jsonl", tmp_path / "c.jsonl")
    assert same.identical and same.note == " (bytes differ)"


def test_csv_numeric(tmp_path):
    (tmp_path / "a.csv").write_text("region,mass\nhead,0.5\narm,1e-3\n")
    (tmp_path / "b.csv").write_text("region,mass\nhead,0.5000001\narm,0.001\n")
    diff = cr.compare_file(tmp_path / "a.csv", tmp_path / "b.csv")
    assert diff.compared == 2 and diff.differing == 1
    assert diff.max_abs == pytest.approx(1e-7) and diff.within(1e-6)


def test_text_masks_paths_and_timings_and_compares_numbers():
    a = "AP=0.5300\nwrote /tmp/run1/out.png\nexplained 3 people in 1.2 s\nmirror r_ankle: 0.412\n"
    b = "AP=0.5300\nwrote /tmp/run2/out.png\nexplained 3 people in 4.8 s\nmirror r_ankle: 0.413\n"
    diff = cr.compare_text(a, b)
    assert diff.differing == 1 and diff.beyond_digit == 0 and not diff.other
    assert cr.masked_lines(a) == ["AP=0.5300", "wrote <path>", "explained 3 people in <time>", "mirror r_ankle: 0.412"]
    inserted = cr.compare_text("a 1\nb 2\nc 3\n", "a 1\nnew 7\nb 2\nc 3.5\n")
    assert inserted.other == ["0 line(s) at base line 2 vs 1 at head line 2: '' vs 'new 7'"]
    assert inserted.compared == 3 and inserted.differing == 1 and inserted.worst == "line 3: 3 vs 3.5"
    worded = cr.compare_text("mirror r_ankle: 0.4\n", "mirror l_ankle: 0.4\n")
    assert len(worded.other) == 1 and worded.other[0].startswith("line 1")


def _page(bytes_row: list[int], scale: float) -> str:
    q = base64.b64encode(np.array(bytes_row, np.uint8).tobytes()).decode()
    s = base64.b64encode(np.array([scale], "<f4").tobytes()).decode()
    data = {"grid": [1, 3], "layers": [{"data": q, "scale": s}], "keypointLayers": [],
            "lut": base64.b64encode(bytes(range(4))).decode()}
    return f"<html><script>\nconst D = {json.dumps(data)};\nconst K = 1;\n</script></html>"


def test_explorer_page_data_is_decoded(tmp_path):
    (tmp_path / "a.html").write_text(_page([0, 128, 255], 0.5))
    (tmp_path / "b.html").write_text(_page([0, 128, 255], 0.5))
    same = cr.compare_file(tmp_path / "a.html", tmp_path / "b.html")
    assert same.identical and same.kind == "explorer" and same.compared == 3 + 1 + 4 + 2
    (tmp_path / "c.html").write_text(_page([0, 127, 255], np.nextafter(np.float32(0.5), np.float32(1))))
    diff = cr.compare_file(tmp_path / "a.html", tmp_path / "c.html")
    assert diff.differing == 2 and diff.max_abs == 1.0 and not diff.other


def test_compare_trees_lists_missing_files(tmp_path):
    a, b = tmp_path / "base", tmp_path / "head"
    for d in (a, b):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "x.json").write_text('{"v": 1}')
        (d / "stderr.txt").write_text(f"progress from {d}")   # not compared
    (a / "only.csv").write_text("a\n1\n")
    rows = {rel: (diff, msg) for rel, diff, msg in cr.compare_trees(a, b, skip=frozenset({"stderr.txt"}))}
    assert set(rows) == {"sub/x.json", "only.csv"}
    assert rows["sub/x.json"][0].identical
    assert rows["only.csv"] == (None, "only in base")


def test_page_with_embedded_images(tmp_path):
    img = np.full((6, 8, 3), 200, np.uint8)
    other = img.copy()
    other[2, 3] = 201

    def page(*images):
        tags = "".join(f'<img src="data:image/png;base64,{base64.b64encode(cv2.imencode(".png", i)[1]).decode()}">'
                       for i in images)
        return f"<html><p>AP 0.53</p>{tags}</html>"
    (tmp_path / "a.html").write_text(page(img, img))
    (tmp_path / "b.html").write_text(page(img, img.copy()))
    (tmp_path / "c.html").write_text(page(img, other))
    same = cr.compare_file(tmp_path / "a.html", tmp_path / "b.html")
    assert same.identical and len(same.images) == 2
    diff = cr.compare_file(tmp_path / "a.html", tmp_path / "c.html")
    assert not diff.identical and not diff.other and diff.differing == 0
    assert [d.differing for d in diff.images] == [0, 1]
    assert "1/2 embedded images differ, image 2: 1/48 pixels differ" in diff.summary()
    assert not diff.within(1e-3) and diff.within(1 / 255)
