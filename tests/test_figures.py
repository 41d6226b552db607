"""Figures as a reader needs them: bounded sizes, honest colour scales, ground truth, titles, legends."""
import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import colors  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from conftest import DATA, SKIER, SKIER_BOX  # noqa: E402
from tpexplain import figures  # noqa: E402

CROWD = DATA / "000000197388.jpg"       # five skiers, overlapping
CROWD_ANN = 437295


def _annotation(ann_id):
    data = json.loads((DATA / "test_coco.json").read_text())
    return next(a for a in data["annotations"] if a["id"] == ann_id)


@pytest.fixture(scope="module")
def model(small_weights):
    from tpexplain.api import load
    return load("default", small_weights)


@pytest.fixture(scope="module")
def crowd(model):
    """A person of the crowded photo with its ground truth and who-is-who, as the CLI sets them."""
    ann = _annotation(CROWD_ANN)
    ex = model.explain(CROWD, bbox=tuple(ann["bbox"]))
    ex.meta.update(image=CROWD.name, person=f"annotation {CROWD_ANN}", model="default")
    ex.ground_truth = np.array(ann["keypoints"], float).reshape(-1, 3)
    return ex


def _texts(fig) -> str:
    out = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        out.append(ax.get_title())
        out += [t.get_text() for t in ax.texts]
    return "\n".join(out)


def _colorbars(fig):
    return [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def _png_size(path):
    head = path.read_bytes()[:24]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# ------------------------------------------------------------------------------------------- query at the GT

def test_at_gt_queries_the_ground_truth_joint(crowd):
    k = crowd.keypoint("l_wrist")
    gt_crop = crowd.ground_truth_at("crop")[k, :2]
    m = crowd.dependency("l_wrist", at="gt", query="geometric")
    assert m.at == "gt" and np.allclose(m.query_crop, gt_crop)
    assert m.token == crowd.layout.token_at(*gt_crop)
    # this prediction lies away from its ground truth: the two queries take different tokens
    assert np.hypot(*(crowd.keypoints_crop[k] - gt_crop)) > 2 * max(crowd.layout.stride)
    assert crowd.dependency("l_wrist", at="gt").token != crowd.dependency("l_wrist").token
    assert crowd.query_info("l_wrist", at="gt")["at"] == "gt"


def test_at_gt_without_ground_truth_or_label_is_one_clear_error(model, crowd):
    bare = model.explain(SKIER, bbox=tuple(float(v) for v in SKIER_BOX.split(",")))
    with pytest.raises(ValueError, match="no ground truth"):
        bare.attention_map("dependency", "nose", at="gt")
    unlabelled = crowd.keypoint_names[int(np.flatnonzero(crowd.ground_truth[:, 2] == 0)[0])]
    with pytest.raises(ValueError, match=f"{unlabelled} is not labelled"):
        crowd.attention_map("dependency", unlabelled, at="gt")


# ------------------------------------------------------------------------------------------- sizes

@pytest.mark.parametrize("dpi", [150, 300])
def test_a_17_by_L_grid_on_the_image_is_bounded(crowd, tmp_path, dpi):
    fig = crowd.grid(None, None, where="image")
    assert max(fig.get_size_inches()) <= figures.MAX_FIGURE_IN + 1e-6
    path = figures.save_figure(fig, tmp_path / "grid.png", dpi=dpi)
    w, h = _png_size(path)
    assert max(w, h) <= figures.MAX_SIDE_PX and w * h <= figures.MAX_AREA_PX * 1.02
    assert path.stat().st_size < 3.5 * 2**20
    assert w > 1500          # bounded, not shrunk to a thumbnail


# ------------------------------------------------------------------------------------------- colour scales

def test_shared_scale_gives_every_panel_the_same_limits(crowd):
    values = [crowd.dependency(k, layer=i).values for i in range(crowd.num_layers) for k in crowd.keypoint_names]
    fig = crowd.grid(None, None, scale="shared")
    limits = {(n.vmin, n.vmax) for n in fig.panel_norms}
    assert len(fig.panel_norms) == len(values) and len(limits) == 1
    assert limits.pop() == pytest.approx((0.0, max(v.max() for v in values)))   # from 0: a flat map looks flat
    (cb,) = _colorbars(fig)       # one colour bar for the figure
    assert (cb.mappable.norm.vmin, cb.mappable.norm.vmax) == (fig.panel_norms[0].vmin, fig.panel_norms[0].vmax)
    per_panel = crowd.grid(None, None, scale="panel")
    assert len({(n.vmin, n.vmax) for n in per_panel.panel_norms}) > 1
    plt.close("all")


def test_absolute_scale_is_zero_to_one_and_uniform_level_is_marked(crowd):
    fig = crowd.dependency("nose").figure(scale="absolute")
    (cb,) = _colorbars(fig)
    assert (cb.mappable.norm.vmin, cb.mappable.norm.vmax) == (0.0, 1.0)
    uniform = 1.0 / crowd.layout.num_tokens
    marks = [ln for ln in cb.ax.lines if ln.get_gid() == "uniform-level"]
    assert len(marks) == 1 and marks[0].get_ydata()[0] == pytest.approx(uniform)
    assert any("1/N" in t.get_text() for t in cb.ax.texts)
    fig = crowd.layers("nose", scale="absolute")
    assert {(n.vmin, n.vmax) for n in fig.panel_norms} == {(0.0, 1.0)}
    plt.close("all")


def test_occlusion_drops_use_a_diverging_scale_centred_at_zero(model):
    from tpexplain.analysis.sensitivity import occlusion_sensitivity
    box = tuple(float(v) for v in SKIER_BOX.split(","))
    sm = occlusion_sensitivity(model, SKIER, bbox=box, window=64, stride=64, keypoints=["l_ankle", "nose"])
    for fig in (sm.figure("l_ankle"), sm.figure()):
        drops = [cb for cb in _colorbars(fig) if isinstance(cb.mappable.norm, colors.CenteredNorm)]
        assert drops, "no diverging colour bar"
        for cb in drops:
            assert cb.mappable.norm.vcenter == 0.0 and cb.mappable.get_cmap().name == figures.CMAP_SIGNED
            assert cb.mappable.norm.vmin == pytest.approx(-cb.mappable.norm.vmax)
        plt.close(fig)
    # a negative drop is coloured (blue), not black like padding
    rgb = figures.blend(np.full((1, 2, 3), 128, np.uint8), np.array([[-0.2, 0.0]]),
                        figures.make_norm(-0.2, 0.2, signed=True), figures.CMAP_SIGNED)
    assert rgb[0, 0, 2] > rgb[0, 0, 0] + 60 and rgb[0, 1].min() > 150


# ------------------------------------------------------------------------------------------- what is drawn

def test_ground_truth_adds_a_dashed_skeleton_and_a_legend_entry(model, crowd):
    bare = model.explain(CROWD, bbox=tuple(_annotation(CROWD_ANN)["bbox"]))
    counts = {}
    for name, ex in (("bare", bare), ("gt", crowd)):
        fig, ax = plt.subplots()
        ex.pose_panel(ax, legend=True)
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        counts[name] = (len(ax.collections), labels)
        plt.close(fig)
    assert counts["gt"][0] >= counts["bare"][0] + 3          # under-stroke, dashed limbs, square joints
    assert "ground truth" in counts["gt"][1] and "ground truth" not in counts["bare"][1]
    assert {"left", "right"} <= set(counts["bare"][1])


def test_low_confidence_keypoints_are_hollow_and_the_threshold_is_stated():
    fig, ax = plt.subplots()
    kp = np.array([[10, 10, 0.9], [20, 20, 0.05], [30, 30, 0.5]] + [[40, 40, 0.9]] * 14, float)
    figures.draw_skeleton(ax, kp)
    from matplotlib.collections import PathCollection
    joints = [c for c in ax.collections if isinstance(c, PathCollection)]
    hollow = [c for c in joints if not c.get_facecolor().size]
    assert len(hollow) == 1 and len(hollow[0].get_offsets()) == 1
    labels = [h.get_label() for h in figures.legend_handles()]
    assert f"score < {figures.CONFIDENCE:g}" in labels
    plt.close(fig)


def test_on_image_draws_the_person_box(crowd):
    fig, ax = plt.subplots()
    crowd.pose_panel(ax, "image", legend=True)
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    x, y, w, h = _annotation(CROWD_ANN)["bbox"]
    assert any(np.allclose([b.get_x(), b.get_y(), b.get_width(), b.get_height()], [x, y, w, h]) for b in boxes)
    assert "person box" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


def test_titles_name_image_person_model_keypoint_and_layer(model, crowd):
    for fig in (crowd.grid(["l_wrist", "nose"], [1, -1]), crowd.dependency("l_wrist", layer=1).figure(),
                crowd.layers("l_wrist")):
        text = _texts(fig)
        for part in (CROWD.name, f"annotation {CROWD_ANN}", "model default", "l_wrist", "layer 2"):
            assert part in text, (part, text)
        plt.close(fig)
    bare = model.explain(SKIER)          # nothing known but the model: never the bare name alone
    fig = bare.grid(["nose"], [0])
    assert fig._suptitle.get_text().startswith("model default")
    plt.close(fig)


def test_layers_figure_for_every_keypoint_is_readable(crowd):
    from tpexplain.analysis.depth import layer_study
    study = layer_study(crowd, "all")
    fig = study.figure()
    assert len(_colorbars(fig)) == 1
    plots = [ax for ax in fig.axes if ax.lines and ax.get_xlabel() == "layer"]
    assert len(plots) == 3
    styles = {(colors.to_hex(ln.get_color()), ln.get_linestyle()) for ln in plots[0].lines if ln.get_label() in
              crowd.keypoint_names}
    assert len(styles) == len(crowd.keypoint_names)           # 17 lines, 17 distinct looks
    assert all(ax.get_legend() is None for ax in plots) and fig.legends   # the legend sits outside the data
    plt.close(fig)


def test_cli_scale_option(tmp_path, small_weights):
    out = tmp_path / "grid.png"
    r = subprocess.run([sys.executable, "-m", "tpexplain", "attention", str(SKIER), "-k", "nose,l_ankle",
                        "--layer", "all", "--bbox", SKIER_BOX, "--weights", str(small_weights), "--scale", "shared",
                        "--no-flip", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------- review 14

def test_uniform_label_sits_on_the_bars_outer_side(crowd):
    fig = crowd.dependency("l_ankle").figure()
    fig.canvas.draw()
    (cb,) = _colorbars(fig)
    (label,) = [t for t in cb.ax.texts if t.get_gid() == "uniform-label"]
    box, bar = label.get_window_extent(), cb.ax.get_window_extent()
    assert box.x0 >= bar.x1 - 1 and bar.y0 - 2 <= (box.y0 + box.y1) / 2 <= bar.y1 + 2     # right of the bar
    plt.close(fig)


def test_panel_scale_marks_uniform_in_white_edged_black():
    norm = colors.Normalize(0.0, 0.02)
    tile = figures.Tile(np.zeros((64, 48, 3), np.uint8), "t", norm, uniform=0.01, values=np.full((64, 48), 0.01),
                        bar=True)
    fig = plt.figure(figsize=(3, 3))
    ax = figures.mosaic(fig, (0, 0, 1, 1), [[tile]], size=(48, 64))
    canvas = ax.images[0].get_array()
    x, y, w, h = ax.tile_bounds[0]
    bar_x = int(x + w + 0.5) + 3                          # inside the tile's colour bar
    line = canvas[int(y + 0.5):int(y + h + 0.5), bar_x, :3].astype(int)
    white = np.flatnonzero(line.min(1) == 255)
    assert len(white) and line[white[0] - 1].max() == 0 and line[white[-1] + 1].max() == 0   # white, edged black
    plt.close(fig)


def test_markers_are_clipped_to_their_tile():
    outside = figures.Tile(np.zeros((64, 48, 3), np.uint8), points=[(200.0, 300.0, "*", 55, "white", "black")],
                           skeleton=np.array([[10.0, 10.0, 1.0]] * 17))
    fig = plt.figure(figsize=(3, 3))
    ax = figures.mosaic(fig, (0, 0, 1, 1), [[outside, outside], [outside, outside]], size=(48, 64))
    assert ax.collections and len(ax.tile_bounds) == 4
    for artist in ax.collections:       # the markers' star lies far outside: drawn, it would sit in another tile
        assert artist.get_clip_on() and artist.get_clip_box() is not None
        (x0, y0), (x1, y1) = ax.transData.inverted().transform(artist.get_clip_box().get_points())
        box = [min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)]
        assert any(np.allclose(box, b, atol=1) for b in ax.tile_bounds)
    plt.close(fig)


def test_grid_shows_the_prediction_once_and_unlabelled_joints_as_empty_panels(crowd):
    unlabelled = [n for n, v in zip(crowd.keypoint_names, crowd.ground_truth[:, 2]) if v == 0]
    assert unlabelled and len(unlabelled) < len(crowd.keypoint_names)
    fig = crowd.grid(None, [0, 1, 2], at="gt")
    tiles = [t for row in fig.mosaic_tiles for t in row if t is not None]
    assert sum(t.skeleton is not None for t in tiles) == 1                # the prediction once, not per layer
    assert sum(t.note == "not labelled" for t in tiles) == 3 * len(unlabelled)
    assert sum(t.values is not None for t in tiles) == 3 * (len(crowd.keypoint_names) - len(unlabelled))
    plt.close(fig)
    with pytest.raises(ValueError, match=f"{unlabelled[0]} is not labelled"):    # one joint: still an error
        crowd.grid([unlabelled[0]], None, at="gt")


def test_layer_study_at_gt_skips_unlabelled_joints_and_says_so(crowd):
    from tpexplain.analysis.depth import layer_study
    unlabelled = [n for n, v in zip(crowd.keypoint_names, crowd.ground_truth[:, 2]) if v == 0]
    study = layer_study(crowd, "all", at="gt")
    assert study.unlabelled == unlabelled
    assert {r["keypoint"] for r in study.metrics}.isdisjoint(unlabelled)
    assert "not labelled" in study.table() and study.summary()["not_labelled"] == unlabelled
    plt.close(study.figure())


def test_titles_say_random_weights_and_single_figures_explain_markers(crowd):
    crowd.meta["weights"] = "random"
    try:
        fig = crowd.dependency("l_wrist", at="gt").figure()
        assert "model default (random weights)" in fig._suptitle.get_text()
        legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
        (legend,) = [g for g in legends if g.get_gid() == "marker-legend"]
        labels = [t.get_text() for t in legend.get_texts()]
        assert labels == ["queried keypoint (ground truth)", "prediction"]
        plt.close(fig)
    finally:
        del crowd.meta["weights"]
    assert "random" not in figures.caption({"model": "default"})
