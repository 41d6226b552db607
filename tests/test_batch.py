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


def _coco_with_every_case(coco_dir, tmp):
    """coco_mini copied to `tmp` with an image nobody is labelled on, a crowd, and a person on a missing image."""
    images = tmp / "images"
    images.mkdir()
    for p in coco_dir.glob("*.jpg"):
        (images / p.name).write_bytes(p.read_bytes())
    (images / "empty.jpg").write_bytes((coco_dir / "000000000785.jpg").read_bytes())
    data = json.loads((coco_dir / "test_coco.json").read_text())
    data["images"] += [{"id": 1, "file_name": "empty.jpg", "width": 640, "height": 425},
                       {"id": 2, "file_name": "missing.jpg", "width": 640, "height": 425}]
    skier = data["annotations"][0]
    data["annotations"] += [dict(skier, id=7001, image_id=2),                      # on the missing image
                            dict(skier, id=7002, iscrowd=1)]                       # a crowd
    (tmp / "ann.json").write_text(json.dumps(data))
    return tmp / "ann.json", images, data


def _oks_by_pycocotools(ann_path, rows):
    """Each row's OKS as pycocotools' own COCOeval.computeOks gives it for its predicted keypoints."""
    import numpy as np
    from pycocotools.cocoeval import COCOeval
    from tpexplain.io import read_coco
    coco = read_coco(ann_path)
    results = []
    for n, r in enumerate(rows):
        ann = coco.anns[int(r["person"][3:])]
        kp = np.array(list(r["keypoints"].values()))
        kp[:, 2] = 1
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                        "score": 1.0 - n / 1000})
    ev = COCOeval(coco, coco.loadRes(results), "keypoints")
    out = {}
    for r in rows:
        ann = coco.anns[int(r["person"][3:])]
        image = ann["image_id"]
        ev._prepare()
        dts = sorted(ev._dts[image, 1], key=lambda d: -d["score"])
        gts = ev._gts[image, 1]
        oks = ev.computeOks(image, 1)
        d = next(i for i, dt in enumerate(dts) if dt["score"] == 1.0 - rows.index(r) / 1000)
        out[r["person"]] = oks[d, [g["id"] for g in gts].index(ann["id"])]
    return out


def test_coco_batch_accounts_for_every_image_and_annotation_and_a_changed_box_redoes_its_figure(
        coco_dir, small_weights, tmp_path):
    import numpy as np
    ann_path, images, data = _coco_with_every_case(coco_dir, tmp_path)
    out = tmp_path / "figs"
    cmd = [TPEXPLAIN, "batch", "--coco", str(ann_path), "--images", str(images), "--out", str(out),
           "--weights", str(small_weights), "-k", "l_ankle", "--dpi", "40", "--jobs", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr                             # the missing image failed
    assert ("13 people: 12 figures made, 0 up to date, 1 failed (1 person)" in run.stderr
            and "; 4 not explained (annotation without keypoints: 2, crowd: 1, no labelled people: 1)" in run.stderr)
    assert "batch: 13/13 people, " in run.stderr and "ETA" in run.stderr          # progress bar and summary on stderr
    assert run.stdout.strip() == str(out / "index.html")
    rows = read_manifest(out / "manifest.jsonl")
    # every annotation of the file is in the manifest once, as made, failed or not explained with why
    by_person = {r["person"]: r for r in rows}
    assert len(rows) == len(by_person) == len(data["annotations"]) + 1
    assert set(by_person) == {f"ann{a['id']}" for a in data["annotations"]} | {"image"}
    status = {p: (r["status"], r.get("reason")) for p, r in by_person.items() if r["status"] != "ok"}
    assert status == {"ann1202706": ("not explained", "annotation without keypoints"),
                      "ann508900": ("not explained", "annotation without keypoints"),
                      "ann7002": ("not explained", "crowd"), "image": ("not explained", "no labelled people"),
                      "ann7001": ("failed", None)}
    assert "missing.jpg" in by_person["ann7001"]["input"] and "not found" in by_person["ann7001"]["error"]
    # and every image of the file
    assert {Path(r["input"]).name for r in rows} == {im["file_name"] for im in data["images"]}
    made = [r for r in rows if r["status"] == "ok"]
    assert len(made) == 12 and len(list(out.glob("*_attention.png"))) == 12
    index = (out / "index.html").read_text()
    assert "Not explained" in index and "no labelled people" in index and "OKS" in index

    # OKS as pycocotools computes it, PCK by hand, from the manifest's own keypoints (rounded to 0.1 px)
    reference = _oks_by_pycocotools(ann_path, made)
    anns = {f"ann{a['id']}": a for a in data["annotations"]}
    for r in made:
        acc = r["accuracy"]
        assert acc["annotation"] == int(r["person"][3:]) and r["label"] == f"annotation {acc['annotation']}"
        assert acc["oks"] == pytest.approx(reference[r["person"]], abs=2e-3)
        gt = np.array(anns[r["person"]]["keypoints"], float).reshape(-1, 3)
        pred = np.array(list(r["keypoints"].values()))[:, :2]
        seen = gt[:, 2] > 0
        hits = np.linalg.norm(pred - gt[:, :2], axis=1)[seen] <= 0.1 * max(anns[r["person"]]["bbox"][2:])
        assert acc["pck"] == pytest.approx(hits.mean(), abs=1e-3) and acc["labelled"] == seen.sum()

    # a changed box in the annotation file redoes that figure only
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    data["annotations"][2]["bbox"] = [250.0, 130.0, 150.0, 160.0]        # ann230195
    ann_path.write_text(json.dumps(data))
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "1 figure made, 11 up to date, 1 failed" in again.stderr, again.stderr
    changed = {n for n, t in stamps.items() if (out / n).stat().st_mtime_ns != t}
    assert changed == {"000000040083_ann230195_attention.png"}
    row = {r["person"]: r for r in read_manifest(out / "manifest.jsonl")}["ann230195"]
    assert row["bbox"] == [250.0, 130.0, 150.0, 160.0]
    # nothing changed: nothing touched
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (images / "missing.jpg").write_bytes((coco_dir / "000000000785.jpg").read_bytes())
    third = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "1 figure made, 12 up to date, 0 failed" in third.stderr
    assert {n: t for n, t in stamps.items() if n.endswith(".png")} == {
        p.name: p.stat().st_mtime_ns for p in out.glob("*.png") if p.name != "missing_ann7001_attention.png"}
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
    args = ["batch", str(images), "--whole-image", "--out", str(out), "--weights", str(small_weights),
            "-k", "l_wrist", "--dpi", "50", "--jobs", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "broken.jpg" in result.output and "cannot decode" in result.output
    assert "2 figures made" in result.output and "1 failed" in result.output
    # progress through tpexplain.progress: not a terminal, so log lines; the last one counts all and the failure
    progress_lines = [m for m in _messages(caplog) if m.startswith("batch: ")]
    assert progress_lines and progress_lines[-1].startswith("batch: 3/3 people, ")
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
    assert "1 figure made, 2 up to date, 0 failed" in result.output
    assert (out / "broken_attention.png").is_file()


def test_changed_options_redo_and_interrupted_output_is_not_complete(coco_dir, small_weights, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tpexplain")
    items = [Item(str(coco_dir / "000000000785.jpg"), "box0", (280.79, 44.73, 218.7, 346.68))]
    out = tmp_path / "o"
    opts = FigureOptions(keypoints=("l_ankle",), dpi=40)
    s = run_batch(items, ["attention"], out, weights=str(small_weights), jobs=1, options=opts)
    assert (s.made, s.up_to_date, s.failed) == (1, 0, 0)
    lines = [m for m in _messages(caplog) if m.startswith("batch: ")]
    assert len(lines) == 1 and lines[0].startswith("batch: 1/1 people, ") and "failed" not in lines[0]
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
    assert (s.made, s.up_to_date) == (0, 1)
    assert not (out / ".000000000785_box0_attention.abcd1234.png").exists()
    assert not [m for m in _messages(caplog) if m.startswith("batch: ")]        # progress=False: no progress
    assert f"1 figure already complete in {out}: up to date, kept" in _messages(caplog)


def test_boxes_file_and_input_errors(coco_dir, tmp_path):
    (tmp_path / "boxes.csv").write_text("image,x,y,w,h\n000000000785.jpg,280,44,218,346\n000000000785.jpg,1,2,30,40\n")
    items = folder_items(coco_dir, tmp_path / "boxes.csv")
    assert [it.person for it in items] == ["box0", "box1"] and items[1].bbox == (1.0, 2.0, 30.0, 40.0)
    assert [(Path(s.image).name, s.reason) for s in items.skipped] == [
        (name, "no box in the boxes file") for name in ("000000040083.jpg", "000000196141.jpg", "000000197388.jpg")]
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
    assert run().made == 1 and run().up_to_date == 1
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
    assert run(item).up_to_date == 1
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
    assert run(moved).made == 1 and run(moved).up_to_date == 1
    # rows edited by hand: ignored when not of the manifest's shape, redone when they do not describe the file
    good = read_manifest(out / "manifest.jsonl")[-1]
    with open(out / "manifest.jsonl", "a") as fh:
        for bad in ({"output": ["x"]}, {"output": "../" + good["output"]}, {"bbox": ["a", 1, 2, 3]},
                    {"figure": 3}, {"input": None}):
            fh.write(json.dumps({**good, **bad}) + "\n")
    assert run(moved).up_to_date == 1
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


def test_a_prediction_that_fits_another_annotated_person_better_is_flagged(coco_dir, tmp_path):
    data = json.loads((coco_dir / "test_coco.json").read_text())
    data["images"] = [im for im in data["images"] if im["id"] == 785]
    skier = data["annotations"][0]
    kp = skier["keypoints"]
    shifted = [v + 120 * (j % 3 == 0 and kp[j + 2] > 0) for j, v in enumerate(kp)]   # x moved 120 px
    # the same box twice: once labelled off to the side, once with the skier's own labels
    data["annotations"] = [dict(skier, id=1, keypoints=shifted), dict(skier, id=2)]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    items = coco_items(tmp_path / "ann.json", coco_dir)
    assert [it.truth.others[0][0] for it in items] == [2, 1]
    s = run_batch(items, ["attention"], tmp_path / "o", jobs=1, progress=False,
                  options=FigureOptions(keypoints=("l_ankle",), dpi=40))       # the trained default model
    assert s.made == 2, s.failures
    assert s.closer == [(items[0].image, "ann1", 2)]
    assert "; 1 prediction closer to another annotated person than to its own (closer_to in the manifest)" in str(s)
    rows = {r["person"]: r["accuracy"] for r in read_manifest(tmp_path / "o" / "manifest.jsonl")}
    assert rows["ann2"]["oks"] > 0.5 and rows["ann2"]["closer_to"] is None
    assert rows["ann1"]["closer_to"] == 2 and rows["ann1"]["closer_fit"] == rows["ann2"]["oks"] > rows["ann1"]["oks"]
    assert "closer to annotation 2" in (tmp_path / "o" / "index.html").read_text()
    # and in the figure's title: the person's label says so
    import tpexplain
    ex = tpexplain.load("default").explain(items[0].image, bbox=items[0].bbox)
    items[0].dress(ex, "default")
    assert ex.meta["person"] == "annotation 1 (prediction closer to annotation 2)"


def test_person_accuracy_on_hand_made_poses():
    import numpy as np
    from tpexplain.training.oks import person_accuracy
    gt = np.array([[10, 10, 2], [20, 10, 1], [0, 0, 0]], float)
    pred = np.array([[10, 10], [23, 14], [90, 90]], float)               # 0 and 5 px off; the third unlabelled
    sigmas = (0.5, 0.5, 0.5)                                             # (2σ)² = 1
    acc = person_accuracy(pred, gt, 50.0, (0, 0, 40, 20), sigmas)
    assert acc["oks"] == pytest.approx((1 + np.exp(-25 / 100)) / 2, abs=1e-4)
    assert acc["pck"] == 0.5 and acc["labelled"] == 2 and acc["closer_to"] is None    # 5 px > 0.1 x 40
    other = np.array([[10, 10, 2], [23, 14, 2], [0, 0, 0]], float)
    acc = person_accuracy(pred, gt, 50.0, (0, 0, 40, 20), sigmas, [(9, other, 50.0, None)])
    assert acc["closer_to"] == 9 and acc["closer_fit"] == 1.0
    # without sigmas (an unknown keypoint set): no OKS, PCK decides
    acc = person_accuracy(pred, gt, 50.0, (0, 0, 40, 20), None, [(9, other, 50.0, (0, 0, 40, 20))])
    assert acc["oks"] is None and acc["closer_to"] == 9 and acc["closer_fit"] == 1.0


def test_detections_are_the_people_with_the_ground_truth_they_overlap(coco_dir, small_weights, tmp_path):
    dets = [{"image_id": 785, "category_id": 1, "bbox": [282, 46, 215, 340], "score": 0.95},
            {"image_id": 785, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.9},
            {"image_id": 40083, "category_id": 1, "bbox": [38, 110, 174, 174], "score": 0.2},
            {"image_id": 40083, "category_id": 3, "bbox": [38, 110, 174, 174], "score": 0.99},
            {"image_id": 12345, "category_id": 1, "bbox": [0, 0, 9, 9], "score": 0.99}]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    items = coco_items(coco_dir / "test_coco.json", coco_dir, detections=tmp_path / "dets.json", min_score=0.5)
    assert [(it.person, it.truth.annotation if it.truth else None) for it in items] == [("det0", 442619),
                                                                                       ("det1", None)]
    assert items[0].label == "detection 0 (score 0.95, annotation 442619)" and items[0].bbox == (282, 46, 215, 340)
    reasons = {s.person: s.reason for s in items.skipped}
    assert reasons["ann198196"] == "no detection matched it (IoU >= 0.5)" and reasons["ann1202706"] == \
        "annotation without keypoints"
    assert len(reasons) == 13 and "image" not in reasons                # every annotation but the matched one
    s = run_batch(items, ["attention"], tmp_path / "o", weights=str(small_weights), jobs=1, progress=False,
                  options=FigureOptions(keypoints=("l_ankle",), dpi=40))
    assert s.made == 2 and len(s.not_explained) == 13
    rows = {r["person"]: r for r in read_manifest(tmp_path / "o" / "manifest.jsonl")}
    assert rows["det0"]["accuracy"]["annotation"] == 442619 and rows["det1"]["accuracy"] is None
    assert rows["det0"]["output"] == "000000000785_det0_attention.png"
    # a malformed file: one line naming the file and the entry
    for bad, why in (("{not json", "cannot read detections"), ('{"a": 1}', "not COCO detection results"),
                     ('[{"image_id": 785, "bbox": [1, 2, 3], "score": 1}]', "entry 1: bbox is not four")):
        (tmp_path / "bad.json").write_text(bad)
        r = CliRunner().invoke(main, ["batch", "--coco", str(coco_dir / "test_coco.json"), "--images",
                                      str(coco_dir), "--detections", str(tmp_path / "bad.json"), "--out",
                                      str(tmp_path / "x"), "--weights", "random"])
        assert r.exit_code != 0 and why in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = CliRunner().invoke(main, ["batch", str(coco_dir), "--detections", str(tmp_path / "dets.json"), "--out",
                                  str(tmp_path / "x")])
    assert r.exit_code == 2 and "--detections needs --coco" in r.output


def test_ground_truth_on_the_explanation_and_queried_at_it(coco_dir, small_weights, tmp_path):
    import numpy as np
    import tpexplain
    items = coco_items(coco_dir / "test_coco.json", coco_dir)
    pm = tpexplain.load("default", str(small_weights))
    ex = pm.explain(items[0].image, bbox=items[0].bbox, flip=False)
    items[0].dress(ex, "default")
    assert {k: ex.meta[k] for k in ("image", "person", "model")} == {
        "image": "000000000785.jpg", "person": "annotation 442619", "model": "default"}
    gt = np.array(json.loads((coco_dir / "test_coco.json").read_text())["annotations"][0]["keypoints"]).reshape(-1, 3)
    assert np.array_equal(ex.ground_truth, gt)
    opts = FigureOptions(keypoints=("l_ankle", "r_wrist"), dpi=40, at="gt", part="left_leg")
    assert opts.signature("attention")["at"] == "gt" and "at" not in FigureOptions().signature("attention")
    s = run_batch(items[:1], ["attention", "layers", "occlusion"], tmp_path / "o", weights=str(small_weights),
                  jobs=1, options=opts, progress=False)
    assert s.made == 3, s.failures
    rows = {r["figure"]: r for r in read_manifest(tmp_path / "o" / "manifest.jsonl")}
    assert rows["occlusion"]["results"]["query_before"]["at"] == "gt"
    with pytest.raises(ValueError, match="--at gt needs ground truth"):
        run_batch([Item(items[0].image, "image")], ["attention"], tmp_path / "p", weights=str(small_weights),
                  options=opts, progress=False)
    assert not (tmp_path / "p").exists()


def test_a_file_of_another_keypoint_set_is_matched_by_name_or_refused_in_one_line(coco_dir, tmp_path):
    from tpexplain.training.oks import CROWDPOSE_KEYPOINTS, CROWDPOSE_SIGMAS
    from tpexplain.zoo import keypoint_names
    data = json.loads((coco_dir / "test_coco.json").read_text())
    data["categories"][0]["keypoints"] = list(CROWDPOSE_KEYPOINTS)       # limbs, then head and neck
    for a in data["annotations"]:
        a["keypoints"] = a["keypoints"][15:] + a["keypoints"][:6]            # COCO's 12 limb joints, nose, l_eye
        del a["area"]                                                        # CrowdPose has none
    (tmp_path / "crowdpose.json").write_text(json.dumps(data))
    items = coco_items(tmp_path / "crowdpose.json", coco_dir, keypoint_names("default"))
    skier = json.loads((coco_dir / "test_coco.json").read_text())["annotations"][0]["keypoints"]
    truth = items[0].truth
    assert len(truth.keypoints) == 17 and truth.keypoints[:5] == ((0.0, 0.0, 0.0),) * 5   # no head joints
    assert [v for row in truth.keypoints[5:] for v in row] == skier[15:]                  # the limbs, by name
    assert truth.sigmas[5:] == CROWDPOSE_SIGMAS[:12] and truth.area == pytest.approx(0.53 * 218.7 * 346.68)
    # a file sharing no joint with the model: one line
    data["categories"][0]["keypoints"] = [f"joint_{j}" for j in range(14)]
    (tmp_path / "other.json").write_text(json.dumps(data))
    r = CliRunner().invoke(main, ["batch", "--coco", str(tmp_path / "other.json"), "--images", str(coco_dir),
                                  "--out", str(tmp_path / "x"), "--weights", "random"])
    assert r.exit_code != 0 and "none of its keypoints (joint_0" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_folder_without_boxes_explains_every_person_found(coco_dir, small_weights, tmp_path):
    from tpexplain.detect.people import find_people
    from tpexplain.io import read_image
    images = tmp_path / "images"
    images.mkdir()
    (images / "skiers.jpg").write_bytes((coco_dir / "000000197388.jpg").read_bytes())   # five skiers
    (images / "blank.png").write_bytes(_blank_png())
    found = sorted(find_people(read_image(images / "skiers.jpg")), key=lambda d: -d.area)
    assert len(found) >= 2
    items = folder_items(images, progress=False)
    assert [it.person for it in items] == [f"det{i}" for i in range(1, len(found) + 1)]
    assert [it.bbox for it in items] == [d.box for d in found]
    assert [(Path(s.image).name, s.reason) for s in items.skipped] == [("blank.png", "no person found (give --boxes)")]
    assert [it.person for it in folder_items(images, whole=True)] == ["image", "image"]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["batch", str(images), "--out", str(out), "--weights", str(small_weights),
                                       "-k", "l_ankle", "--dpi", "40", "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"skiers_det{i}_attention.png"
                                                                 for i in range(1, len(found) + 1))
    rows = read_manifest(out / "manifest.jsonl")
    assert {r["status"] for r in rows if Path(r["input"]).name == "blank.png"} == {"not explained"}


def _blank_png() -> bytes:
    import cv2
    import numpy as np
    return cv2.imencode(".png", np.full((240, 320, 3), 127, np.uint8))[1].tobytes()


def test_summary_wording_singular_plural_and_one_meaning_of_each_word(tmp_path, caplog):
    from tpexplain.batch.inputs import Skip
    from tpexplain.batch.manifest import compacted
    from tpexplain.batch.runner import BatchSummary
    from tpexplain.progress import progress
    one = BatchSummary(persons=1, made=1, index="i.html")
    assert str(one).startswith("1 person: 1 figure made, 0 up to date, 0 failed in ")
    many = BatchSummary(persons=3, made=0, up_to_date=2, failed=2, index="i.html",
                        failures=[("a.jpg", "box0", "attention", "x"), ("b.jpg", "box0", "attention", "x")],
                        not_explained=[Skip("c.jpg", "image", "no person found")])
    assert str(many).startswith("3 people: 0 figures made, 2 up to date, 2 failed (2 people); "
                                "1 not explained (no person found: 1) in ")
    assert "skipped" not in str(many) and many.skipped == 2          # the former name still reads
    # a resume whose only work failed at once: no rate (it would be thousands per second)
    caplog.set_level(logging.INFO, logger="tpexplain")
    with progress(2, desc="batch", unit="people") as bar:
        bar.update(2, failed=2)
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch: ")] == [
        "batch: 2/2 people, 2 failed"]
    # the manifest says "not explained"; a manifest written when it said "skipped" still reads
    (tmp_path / "manifest.jsonl").write_text(json.dumps(
        {"input": "d.jpg", "person": "image", "figure": None, "output": None, "status": "skipped",
         "reason": "no labelled people"}) + "\n")
    assert read_manifest(tmp_path / "manifest.jsonl")[0]["status"] == "not explained"
    rows = compacted(tmp_path / "manifest.jsonl", [Skip("c.jpg", "image", "no person found")])
    assert [r["status"] for r in rows] == ["not explained"]
    assert "1 not explained" in gallery_html(rows) and "0 people, 0 figures" in gallery_html(rows)
