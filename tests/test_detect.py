"""The person detector (tpexplain.detect.people) on real photos: what it finds, what it misses, how fast."""
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA
from tpexplain.detect.people import Detection, find_people, grow, iou, nms
from tpexplain.io import read_coco, read_image

ROOT = Path(__file__).resolve().parents[1]
SKIERS = DATA / "000000197388.jpg"      # five skiers, all annotated with keypoints


def gt_boxes(name: str) -> list:
    coco = read_coco(DATA / "test_coco.json")
    img_id = next(i for i, info in coco.imgs.items() if info["file_name"] == name)
    return [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id)) if a["num_keypoints"] > 0]


def test_finds_several_of_the_skiers_quickly():
    img = read_image(SKIERS)
    t0 = time.perf_counter()
    found = find_people(img)
    seconds = time.perf_counter() - t0
    assert len(found) >= 3
    hits = {max(range(5), key=lambda g: iou(d.box, gt_boxes(SKIERS.name)[g])) for d in found
            if max(iou(d.box, b) for b in gt_boxes(SKIERS.name)) >= 0.5}
    assert len(hits) >= 2                                   # two different skiers matched at IoU >= 0.5
    assert all(d.box[0] >= 0 and d.box[1] >= 0 and d.box[0] + d.box[2] <= 640 + 1e-6 for d in found)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    assert seconds < 10                                     # about 0.3 s on an idle core; generous for CI


def test_finds_the_synthetic_example_person():
    img = read_image(ROOT / "examples" / "synthetic_person.jpg")
    found = find_people(img)
    assert found
    largest = max(found, key=lambda d: d.area)
    assert iou(largest.box, (105, 15, 110, 285)) >= 0.5    # the figure standing in the middle


def test_blank_and_tiny_images_have_nobody():
    assert find_people(np.full((300, 400, 3), 128, np.uint8)) == []
    assert find_people(np.zeros((8, 8, 3), np.uint8)) == []


def test_nms_keeps_the_best_of_overlapping_boxes_and_drops_pieces_inside():
    a = Detection((10, 10, 100, 200), 2.0, "hog")
    b = Detection((15, 12, 100, 200), 1.0, "hog")           # the same person, worse
    face = Detection((40, 20, 30, 60), 0.5, "face")         # inside a: the same person
    other = Detection((300, 10, 80, 200), 0.7, "upperbody")
    assert nms([b, face, a, other]) == [a, other]



def test_a_box_nested_in_a_larger_comparable_one_is_dropped():
    """000000000785.jpg: HOG's torso-sized window (score 1.32) inside the whole skier's (0.86) is one person;
    a nested box scoring far better than the larger one is kept."""
    torso = Detection((341, 32, 68, 179), 1.32, "hog")
    whole = Detection((312, 17, 150, 397), 0.86, "hog")
    assert nms([torso, whole]) == [whole]
    weak = Detection(whole.box, 0.5, "face")
    assert nms([torso, weak]) == [torso, weak]
    found = find_people(read_image(DATA / "000000000785.jpg"))
    assert [d.label() for d in found] == ["312,17,150,397"]


def test_grown_boxes_follow_body_proportions():
    x, y, w, h = grow((100, 50, 20, 20), "face")          # a 20-px face → a person about 7 faces tall
    assert (w, h) == (60, 144) and x == 80 and y < 50
    assert grow((0, 0, 64, 128), "hog")[3] < 128            # HOG's window has margins around the person


def test_pose_model_rescoring_keeps_only_checked_people():
    import tpexplain
    pm = tpexplain.load("default")
    img = read_image(ROOT / "examples" / "synthetic_person.jpg")
    checked = tpexplain.detect_people(img, pm)
    assert checked and all(0 <= d.score <= 1 for d in checked)
    assert {d.box for d in checked} <= {d.box for d in find_people(img)}
    assert pm.detect(img) == checked


def test_bench_counts_recall_and_precision_on_coco_mini():
    spec = importlib.util.spec_from_file_location("detect_recall", ROOT / "bench" / "detect_recall.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.evaluate(DATA / "test_coco.json", DATA, find_people)
    assert r["images"] == 4 and r["people"] == 12           # annotations with keypoints; 2 without are ignored
    assert sum(n for n, _ in r["by_size"].values()) == 12
    assert r["hits"] >= 4                                   # measured 5 of 12 (docs/usage.md)
    assert r["detections"] >= r["hits"] + r["false"]


@pytest.mark.parametrize("missing", ["HOGDescriptor"])
def test_an_opencv_without_the_detectors_says_what_to_install(monkeypatch, missing):
    import cv2

    from tpexplain.detect import people
    people._detectors.cache_clear()
    monkeypatch.delattr(cv2, missing)
    try:
        with pytest.raises(people.DetectorUnavailable, match="opencv-contrib-python-headless.*--bbox"):
            people.find_people(np.zeros((200, 200, 3), np.uint8))
    finally:
        monkeypatch.undo()
        people._detectors.cache_clear()
