"""Reading images as viewers show them, and writing outputs with the permissions open() would give."""
import io
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
