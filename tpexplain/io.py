"""Reading images and writing outputs without ever leaving a half-written file."""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

MAX_PIXELS = 400_000_000


def read_image(path: str | Path) -> np.ndarray:
    """Any image OpenCV reads (grayscale, RGBA, 16-bit, …) as RGB uint8; ValueError with a reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"image not found: {path}")
    if path.is_dir():
        raise ValueError(f"expected an image file, got a directory: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ValueError(f"image file is empty: {path}")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot decode image (corrupt or unsupported format): {path}")
    # IMREAD_UNCHANGED keeps 16-bit and alpha but ignores EXIF orientation: apply it as every viewer does
    return apply_orientation(to_rgb8(image, str(path)), exif_orientation(data.tobytes()))


def exif_orientation(encoded: bytes) -> int:
    """The EXIF orientation tag (1-8) of an encoded image; 1 (as stored) when it has none."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(encoded)) as im:
            value = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored image the way its EXIF orientation says it is to be shown."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],                       # mirrored
        3: lambda a: a[::-1, ::-1],                    # upside down
        4: lambda a: a[::-1],                          # mirrored and upside down
        5: lambda a: a.swapaxes(0, 1),                 # mirrored, turned 90° (transpose)
        6: lambda a: np.rot90(a, -1),                  # turned 90° clockwise (a phone held upright)
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],     # mirrored, turned 270° (transverse)
        8: lambda a: np.rot90(a, 1),                   # turned 90° counter-clockwise
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(image))


def as_rgb(image: "np.ndarray | str | Path") -> np.ndarray:
    """An image path, or an array (RGB uint8 taken as is; anything else as OpenCV's BGR/gray), as RGB uint8."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        return arr
    return to_rgb8(arr[..., ::-1] if arr.ndim == 3 and arr.shape[2] >= 3 else arr)


def to_rgb8(image: np.ndarray, where: str = "image") -> np.ndarray:
    """Normalise OpenCV's BGR/BGRA/gray, 8/16-bit/float arrays to RGB uint8."""
    if image.size > MAX_PIXELS * 4:
        raise ValueError(f"{where} is too large ({image.shape[1]}x{image.shape[0]})")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        scale = 255.0 if image.max() <= 1.0 else 1.0
        image = np.clip(image * scale, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"{where}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        # composite on white: transparent areas of a cut-out person should not read as black
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        rgb = image[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
        return cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_BGR2RGB)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)


def check_writable(path: str | Path) -> Path:
    """Fail early, with a reason, if `path` cannot be written (before any computation)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"output path is a directory: {path}")
    if not parent.exists():
        raise ValueError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output folder is not writable: {parent}")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600; give it the mode open() would have (the umask's, or the replaced file's)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _mode_for(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` so that a reader never sees a half-written file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def parse_bbox(text: str, image_shape: tuple[int, ...] | None = None) -> tuple[float, float, float, float]:
    """'x,y,w,h' → floats; the box must have a positive size and overlap the image."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"bad bbox '{text}': expected four numbers x,y,w,h") from None
    if not all(np.isfinite((x, y, w, h))) or w <= 0 or h <= 0:
        raise ValueError(f"bad bbox '{text}': width and height must be positive numbers")
    if image_shape is not None:
        ih, iw = image_shape[:2]
        if x >= iw or y >= ih or x + w <= 0 or y + h <= 0:
            raise ValueError(f"bbox '{text}' lies outside the {iw}x{ih} image")
    return x, y, w, h
