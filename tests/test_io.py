"""Reading images as viewers show them, writing outputs by the output policy with the permissions open() would give."""
import io
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import SKIER, SKIER_BOX
from PIL import Image, ImageOps

from tpexplain.io import apply_orientation, atomic_path, read_image, write_text_atomic


def _with_orientation(array: np.ndarray, orientation: int, fmt: str = "PNG", **save) -> bytes:
    im = Image.fromarray(array)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, fmt, exif=exif, **save)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    stored = (rng.random((6, 4, 3)) * 255).astype(np.uint8)
    path = tmp_path / f"o{orientation}.png"
    path.write_bytes(_with_orientation(stored, orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(read_image(path), expected)
    assert np.array_equal(apply_orientation(stored, orientation), expected)


def _phone_photo(tmp_path) -> "tuple[np.ndarray, os.PathLike]":
    """The skier photo stored on its side with orientation 6, as a phone held upright writes it."""
    upright = np.asarray(Image.open(SKIER).convert("RGB"))
    stored = np.ascontiguousarray(np.rot90(upright, 1))          # turned 90° counter-clockwise on disk
    path = tmp_path / "phone.jpg"
    path.write_bytes(_with_orientation(stored, 6, "JPEG", quality=95))
    return upright, path


def test_a_phone_jpeg_is_read_upright(tmp_path):
    upright, path = _phone_photo(tmp_path)
    image = read_image(path)
    assert image.shape == upright.shape
    # JPEG is lossy; upright and sideways readings would differ by far more than this
    assert np.abs(image.astype(int) - upright.astype(int)).mean() < 4


def test_cli_box_measured_in_a_viewer_fits_a_phone_photo(tmp_path):
    _, path = _phone_photo(tmp_path)
    out = tmp_path / "fig.png"
    r = subprocess.run([sys.executable, "-m", "tpexplain", "attention", str(path), "-k", "l_ankle",
                        "--bbox", SKIER_BOX, "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0




def test_atomic_outputs_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.png") as tmp:
            tmp.write_bytes(b"png")
        os.umask(0o077)
        write_text_atomic(tmp_path / "c.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "b.png").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "c.txt").st_mode) == 0o600


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_text_atomic(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_cli_figure_is_world_readable_under_umask_022(tmp_path):
    out = tmp_path / "fig.png"
    r = subprocess.run(f"umask 022 && {sys.executable} -m tpexplain attention {SKIER} -k l_ankle "
                       f"--bbox {SKIER_BOX} -o {out}", shell=True, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644


# ----------------------------------------------------------------------------------- the output policy

def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    return fig


@pytest.mark.parametrize("ext", ["png", "pdf", "svg", "jpg", "jpeg"])
def test_our_figures_are_recognised_and_replaced_without_force(tmp_path, ext):
    from tpexplain.figures import save_figure
    from tpexplain.io import made_by_tpexplain
    path = save_figure(_figure(), tmp_path / f"f.{ext}")
    assert made_by_tpexplain(path)
    save_figure(_figure(), path)                       # ours: replaced
    other = tmp_path / f"other.{ext}"
    other.write_bytes(b"somebody else's " + ext.encode())
    with pytest.raises(ValueError, match="not written by tpexplain"):
        save_figure(_figure(), other)
    assert other.read_bytes() == b"somebody else's " + ext.encode()
    save_figure(_figure(), other, force=True)
    assert made_by_tpexplain(other)


def test_our_json_and_csv_are_recognised(tmp_path):
    from tpexplain.analysis.depth import METRIC_KEYS
    from tpexplain.analysis.results import Result
    from tpexplain.io import CSV_HEADERS, made_by_tpexplain

    class Numbers(Result):
        def summary(self):
            return {"a": 1}

        def csv_rows(self):
            return CSV_HEADERS[1].split(","), [["own", 1, 2, 1]]

    assert ",".join(METRIC_KEYS) in CSV_HEADERS
    r = Numbers()
    got = json.loads(r.to_json(tmp_path / "n.json"))
    # whose numbers they are: unknown for a result made without an explanation, but the keys are there
    assert got == {"generator": "tpexplain", "a": 1, "image": None, "person": None, "box": None, "model": None,
                   "weights": None}
    r.to_csv(tmp_path / "n.csv")
    assert made_by_tpexplain(tmp_path / "n.json") and made_by_tpexplain(tmp_path / "n.csv")
    r.to_json(tmp_path / "n.json")
    r.to_csv(tmp_path / "n.csv")
    (tmp_path / "u.csv").write_text("x,y\n1,2\n")
    (tmp_path / "u.json").write_text('{"a": 1}')
    for name, write in (("u.csv", r.to_csv), ("u.json", r.to_json)):
        with pytest.raises(ValueError, match="--force"):
            write(tmp_path / name)
    assert (tmp_path / "u.csv").read_text() == "x,y\n1,2\n"
    with pytest.raises(ValueError, match=r"\.json"):
        r.to_json(tmp_path / "n.txt")


def test_check_output_refuses_inputs_special_files_and_wrong_extensions(tmp_path):
    from tpexplain.io import check_output
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"x")
    with pytest.raises(ValueError, match="input"):
        check_output(photo, [photo], force=True)
    os.symlink(photo, tmp_path / "alias.png")
    with pytest.raises(ValueError, match="input"):
        check_output(tmp_path / "alias.png", [str(photo)], force=True)
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ValueError, match="FIFO"):
        check_output(tmp_path / "pipe.png", force=True)
    with pytest.raises(ValueError, match=r"\.png, \.pdf, \.svg, \.jpg, \.jpeg"):
        check_output(tmp_path / "fig.txt", kind="figure")
    assert check_output(tmp_path / "new.png", [photo], kind="figure") == tmp_path / "new.png"
    if os.geteuid() == 0:
        os.mknod(tmp_path / "dev.png", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with pytest.raises(ValueError, match="character device"):
            check_output(tmp_path / "dev.png", force=True)
        with pytest.raises(OSError, match="not a regular file"):   # the writer's own guard
            write_text_atomic(tmp_path / "dev.png", "x")
        assert stat.S_ISCHR(os.lstat(tmp_path / "dev.png").st_mode)


def test_a_failed_write_keeps_the_previous_file_and_names_it(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "good")
    with pytest.raises(OSError, match=f"could not write {path}: No space left"):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise OSError(28, "No space left on device")
    assert path.read_text() == "good" and os.listdir(tmp_path) == ["out.txt"]


def test_inputs_must_be_regular_files(tmp_path):
    from tpexplain.io import require_regular_file
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ValueError, match="image is a FIFO"):
        read_image(tmp_path / "pipe.jpg")          # refused without opening it: no hang
    with pytest.raises(ValueError, match="boxes file not found"):
        require_regular_file(tmp_path / "none.csv", "boxes file")
    with pytest.raises(ValueError, match="folder"):
        require_regular_file(tmp_path, "annotation file")


def test_numbers_are_finite_and_in_range():
    from tpexplain.io import check_annotation, parse_bbox
    assert parse_bbox("1,2,3,4", (100, 100)) == (1, 2, 3, 4)
    for text, match in (("0,0,1e308,1e308", "within"), ("nan,0,1,1", "positive"), ("0,0,2000,10", "far larger"),
                        ("200,0,5,5", "outside")):
        with pytest.raises(ValueError, match=match):
            parse_bbox(text, (100, 100), "--bbox")
    check_annotation({"id": 1, "bbox": [0, 0, 10, 10], "keypoints": [1, 2, 2] * 17, "area": 5}, "f.json")
    for bad, field in (({"bbox": [0, 0, float("nan"), 1]}, "bbox"), ({"bbox": [0, 0, True, 1]}, "bbox"),
                       ({"keypoints": [1, 2, 7]}, "visibility"), ({"keypoints": [1, 2]}, "keypoints"),
                       ({"area": float("-inf")}, "area"), ({"area": "big"}, "area")):
        with pytest.raises(ValueError, match=f"f.json: annotation 3: .*{field}"):
            check_annotation({"id": 3, **bad}, "f.json")
