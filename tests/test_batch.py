"""`tpexplain batch`: one figure per annotated person, resumable, a bad image is reported and skipped."""
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tpexplain.batch import FigureOptions, Item, coco_items, folder_items, gallery_html, read_manifest, run_batch
from tpexplain.cli import main

TPEXPLAIN = str(Path(sys.executable).parent / "tpexplain")



def test_coco_items_are_the_annotated_people(coco_dir, tmp_path, capsys):
    items = coco_items(coco_dir / "test_coco.json", coco_dir)
    assert len(items) == 12                          # 14 annotations, 2 with num_keypoints == 0
    assert len({it.key for it in items}) == 12
    assert all(it.bbox and it.person.startswith("ann") for it in items)
    data = json.loads((coco_dir / "test_coco.json").read_text())
    wanted = [f"ann{a['id']}" for a in data["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    assert [it.person for it in items] == wanted     # in the file's order
    assert capsys.readouterr().out == ""             # pycocotools' narration kept off stdout
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"not a COCO annotation file: .*bad\.json"):
        coco_items(tmp_path / "bad.json", coco_dir)
    (tmp_path / "no_images.json").write_text(json.dumps({"annotations": data["annotations"]}))
    with pytest.raises(ValueError, match=r"not a COCO annotation file: .*no_images\.json \('images'"):
        coco_items(tmp_path / "no_images.json", coco_dir)


def test_coco_batch_makes_a_figure_per_person_and_a_rerun_does_no_work(coco_dir, small_weights, tmp_path):
    out = tmp_path / "figs"
    cmd = [TPEXPLAIN, "batch", "--coco", str(coco_dir / "test_coco.json"), "--images", str(coco_dir),
           "--out", str(out), "--weights", str(small_weights), "-k", "l_ankle", "--dpi", "60", "--jobs", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    figures = sorted(out.glob("*_attention.png"))
    assert len(figures) == 12
    rows = read_manifest(out / "manifest.jsonl")
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    row = rows[0]
    assert set(row["keypoints"]) >= {"nose", "l_ankle"} and len(row["keypoints"]["l_ankle"]) == 3
    assert {"read", "explain", "figure"} <= set(row["timings"])
    assert (out / row["output"]).is_file() and Path(row["input"]).is_file()
    index = (out / "index.html").read_text()
    assert all(f.name in index for f in figures)
    assert "persons" in run.stderr and "ETA" in run.stderr          # progress bar and summary on stderr
    assert run.stdout.strip() == str(out / "index.html")

    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "0 figures made, 12 up to date (skipped), 0 failed" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps   # nothing touched
    assert not [p for p in out.iterdir() if p.name.startswith(".")]           # no temporaries left


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("tpexplain")]


def test_folder_batch_reports_a_corrupt_image_and_makes_the_others(coco_dir, small_weights, tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("000000000785.jpg", "000000040083.jpg"):
        (images / name).write_bytes((coco_dir / name).read_bytes())
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    args = ["batch", str(images), "--out", str(out), "--weights", str(small_weights), "-k", "l_wrist",
            "--dpi", "50", "--jobs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "broken.jpg" in result.output and "cannot decode" in result.output
    assert "2 figures made" in result.output and "1 failed" in result.output
    # progress through tpexplain.progress: not a terminal, so log lines; the last one counts all and the failure
    progress_lines = [m for m in _messages(caplog) if m.startswith("batch: ")]
    assert progress_lines and progress_lines[-1].startswith("batch: 3/3 persons, ")
    assert progress_lines[-1].endswith(", 1 failed") and progress_lines[-1] in result.output
    assert any(m.startswith("failed: ") and "broken.jpg" in m for m in _messages(caplog))
    assert sorted(p.name for p in out.glob("*.png")) == ["000000000785_attention.png", "000000040083_attention.png"]
    rows = {Path(r["input"]).name: r for r in read_manifest(out / "manifest.jsonl")}
    assert rows["broken.jpg"]["status"] == "failed" and "cannot decode" in rows["broken.jpg"]["error"]
    assert "broken.jpg" in (out / "index.html").read_text()

    # a re-run retries only the failure; a fixed image is then made
    (images / "broken.jpg").write_bytes((coco_dir / "000000196141.jpg").read_bytes())
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "1 figures made, 2 up to date (skipped), 0 failed" in result.output
    assert (out / "broken_attention.png").is_file()


def test_changed_options_redo_and_interrupted_output_is_not_complete(coco_dir, small_weights, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tpexplain")
    items = [Item(str(coco_dir / "000000000785.jpg"), "box0", (280.79, 44.73, 218.7, 346.68))]
    out = tmp_path / "o"
    opts = FigureOptions(keypoints=("l_ankle",), dpi=40)
    s = run_batch(items, ["attention"], out, weights=str(small_weights), jobs=1, options=opts)
    assert (s.made, s.skipped, s.failed) == (1, 0, 0)
    lines = [m for m in _messages(caplog) if m.startswith("batch: ")]
    assert len(lines) == 1 and lines[0].startswith("batch: 1/1 persons, ") and "failed" not in lines[0]
    caplog.clear()
    figure = out / "000000000785_box0_attention.png"
    # a file without its manifest row (killed between the write and the record) is redone
    (out / "manifest.jsonl").write_text("")
    s = run_batch(items, ["attention"], out, weights=str(small_weights), jobs=1, options=opts, progress=False)
    assert s.made == 1
    # other options make a different figure: not complete
    opts2 = FigureOptions(keypoints=("r_ankle",), dpi=40)
    s = run_batch(items, ["attention"], out, weights=str(small_weights), jobs=1, options=opts2, progress=False)
    assert s.made == 1 and figure.is_file()
    # a temporary left by a killed writer is cleaned; a cut-off manifest line is ignored
    (out / ".000000000785_box0_attention.abcd1234.png").write_bytes(b"half")
    with open(out / "manifest.jsonl", "a") as fh:
        fh.write('{"input": "cut off')
    s = run_batch(items, ["attention"], out, weights=str(small_weights), jobs=1, options=opts2, progress=False)
    assert (s.made, s.skipped) == (0, 1)
    assert not (out / ".000000000785_box0_attention.abcd1234.png").exists()
    assert not [m for m in _messages(caplog) if m.startswith("batch: ")]        # progress=False: no progress
    assert f"1 figure already complete in {out}: skipped" in _messages(caplog)


def test_boxes_file_and_input_errors(coco_dir, tmp_path):
    (tmp_path / "boxes.csv").write_text("image,x,y,w,h\n000000000785.jpg,280,44,218,346\n000000000785.jpg,1,2,30,40\n")
    items = folder_items(coco_dir, tmp_path / "boxes.csv")
    assert [it.person for it in items] == ["box0", "box1"] and items[1].bbox == (1.0, 2.0, 30.0, 40.0)
    (tmp_path / "boxes.json").write_text(json.dumps({"000000040083.jpg": [[0, 0, 100, 200]]}))
    assert folder_items(coco_dir, tmp_path / "boxes.json")[0].key == "000000040083_box0"
    with pytest.raises(ValueError, match="no images"):
        folder_items(tmp_path)
    with pytest.raises(ValueError, match="unknown figure kind 'heat'"):
        run_batch(items, ["heat"], tmp_path / "x", progress=False)
    result = CliRunner().invoke(main, ["batch", "--out", str(tmp_path / "y")])
    assert result.exit_code != 0 and "FOLDER or --coco" in result.output
    result = CliRunner().invoke(main, ["batch", str(coco_dir), "--out", str(tmp_path / "y"), "-k", "l_ankel",
                                       "--weights", "random"])
    assert result.exit_code != 0 and "did you mean l_ankle" in result.output


def test_same_stem_images_get_distinct_outputs(tmp_path):
    for name in ("a.jpg", "a.png"):
        (tmp_path / name).write_bytes(b"")
    keys = [it.key for it in folder_items(tmp_path)]
    assert keys == ["a_jpg", "a_png"]


def test_keypoints_all_is_the_models_own_set():
    from tpexplain.keypoints import COCO_KEYPOINTS, MPII_KEYPOINTS
    assert FigureOptions().for_model("default").keypoints == COCO_KEYPOINTS
    assert FigureOptions().for_model("tokenpose-l-d6").keypoints == MPII_KEYPOINTS   # MPII's 16, no weights read
    assert FigureOptions(keypoints="pelvis,left_wrist").for_model("tokenpose-l-d6").keypoints == ("pelvis", "l_wrist")
    assert FigureOptions().for_model("default").signature("layers")["keypoints"] == list(COCO_KEYPOINTS)
    with pytest.raises(ValueError, match="unknown keypoint 'pelvis'"):
        FigureOptions(keypoints="pelvis").for_model("default")


def test_gallery_escapes_and_lists_failures():
    rows = [{"input": "x/<a>.jpg", "person": "image", "bbox": None, "figure": "attention",
             "output": "a_attention.png", "status": "failed", "error": "bad <thing>"}]
    page = gallery_html(rows)
    assert "&lt;thing&gt;" in page and "<thing>" not in page and "1 failed" in page


def test_layers_and_occlusion_figures_with_their_numbers(coco_dir, small_weights, tmp_path):
    items = [Item(str(coco_dir / "000000000785.jpg"), "box0", (280.79, 44.73, 218.7, 346.68))]
    opts = FigureOptions(keypoints=("l_wrist",), occlusion_keypoint="l_ankle", part="left_leg", dpi=40)
    s = run_batch(items, ["layers", "occlusion"], tmp_path, weights=str(small_weights), jobs=1, options=opts,
                  progress=False)
    assert (s.made, s.failed) == (2, 0), s.failures
    rows = {r["figure"]: r for r in read_manifest(tmp_path / "manifest.jsonl")}
    assert (tmp_path / rows["layers"]["output"]).is_file() and (tmp_path / rows["occlusion"]["output"]).is_file()
    assert len(rows["layers"]["results"]["metrics"]) == 4                       # one row per layer
    assert rows["occlusion"]["results"]["keypoint"] == "l_ankle" and "peak_drop" in rows["occlusion"]["results"]
    assert rows["occlusion"]["keypoints"]["l_ankle"]                             # the clean prediction


def test_new_weights_in_the_same_file_redo_the_figures(coco_dir, small_weights, tmp_path):
    weights = tmp_path / "model.pth"
    weights.write_bytes(small_weights.read_bytes())
    items = [Item(str(coco_dir / "000000000785.jpg"), "box0", (280.79, 44.73, 218.7, 346.68))]
    opts = FigureOptions(keypoints=("l_ankle",), dpi=40)
    run = lambda: run_batch(items, ["attention"], tmp_path / "o", weights=str(weights), jobs=1, options=opts,
                            progress=False)
    assert run().made == 1 and run().skipped == 1
    from tpexplain import zoo
    torch.manual_seed(7)
    torch.save(zoo.build("default").state_dict(), weights)     # retrained: same name, other weights
    assert run().made == 1


def test_resume_checks_that_each_output_is_the_file_its_row_describes(coco_dir, small_weights, tmp_path):
    import hashlib
    item = Item(str(coco_dir / "000000000785.jpg"), "box0", (280.79, 44.73, 218.7, 346.68))
    out = tmp_path / "o"
    opts = FigureOptions(keypoints=("l_ankle",), dpi=40)

    def run(it):
        return run_batch([it], ["attention"], out, weights=str(small_weights), jobs=1, options=opts, progress=False)

    assert run(item).made == 1
    figure = out / "000000000785_box0_attention.png"
    made = figure.read_bytes()
    row = read_manifest(out / "manifest.jsonl")[0]
    assert (row["bytes"], row["sha256"]) == (len(made), hashlib.sha256(made).hexdigest())
    assert row["bbox"] == [280.79, 44.73, 218.7, 346.68]
    assert run(item).skipped == 1
    # the same size, other bytes: not the file the row describes, redone
    figure.write_bytes(made[:-20] + bytes(20))
    assert run(item).made == 1 and figure.read_bytes() == made
    # a folder or a link where the figure was: redone (the link itself replaced, its target untouched)
    figure.unlink()
    (tmp_path / "elsewhere.png").write_bytes(made)
    figure.symlink_to(tmp_path / "elsewhere.png")
    assert run(item).made == 1 and not figure.is_symlink() and (tmp_path / "elsewhere.png").read_bytes() == made
    # the box changed in the annotation file: the same output name, another figure
    moved = Item(item.image, item.person, (270.0, 40.0, 220.0, 350.0))
    assert run(moved).made == 1 and run(moved).skipped == 1
    # rows edited by hand: ignored when not of the manifest's shape, redone when they do not describe the file
    good = read_manifest(out / "manifest.jsonl")[-1]
    with open(out / "manifest.jsonl", "a") as fh:
        for bad in ({"output": ["x"]}, {"output": "../" + good["output"]}, {"bbox": ["a", 1, 2, 3]},
                    {"figure": 3}, {"input": None}):
            fh.write(json.dumps({**good, **bad}) + "\n")
    assert run(moved).skipped == 1
    with open(out / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps({**good, "sha256": None}) + "\n")           # a row from an older version
    assert run(moved).made == 1
    rows = read_manifest(out / "manifest.jsonl")
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["bbox"] == [270.0, 40.0, 220.0, 350.0]


def test_a_figure_tpexplain_did_not_make_is_replaced_only_with_force(coco_dir, small_weights, tmp_path):
    item = Item(str(coco_dir / "000000000785.jpg"), "box0", (280.79, 44.73, 218.7, 346.68))
    out = tmp_path / "o"
    opts = FigureOptions(keypoints=("l_ankle",), dpi=40)

    def run(**kw):
        return run_batch([item], ["attention"], out, weights=str(small_weights), jobs=1, options=opts,
                         progress=False, **kw)

    assert run().made == 1
    figure = out / "000000000785_box0_attention.png"
    import cv2
    import numpy as np
    foreign = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()   # not marked as ours
    figure.write_bytes(foreign)
    summary = run()
    assert summary.failed == 1 and figure.read_bytes() == foreign           # the user's file is kept
    assert run(force=True).made == 1 and figure.read_bytes() != foreign
