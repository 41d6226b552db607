"""Reading inputs safely and writing outputs by one policy, never leaving a half-written file.

The output policy (`check_output`, then `atomic_path`): an output is never an input of the same run; only a
regular file is ever replaced (a folder, FIFO, device or socket at the path is an error); an existing file is
replaced only if tpexplain wrote it (see `made_by_tpexplain`) or the caller forces it; the extension decides
the format; a failed write removes its temporary file and keeps the previous good file.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

MAX_PIXELS = 400_000_000
MAX_COORD = 1e6          # no box or keypoint coordinate is this far out (the largest image side is far below)
BOX_FACTOR = 10          # a box may reach this many image sides out, no further

# the formats each kind of output may have, by extension (the first is the default)
FORMATS = {
    "figure": ("png", "pdf", "svg", "jpg", "jpeg"),
    "html": ("html", "htm"),
    "json": ("json",),
    "csv": ("csv",),
    "checkpoint": ("pth", "pt"),
}
GENERATOR = "tpexplain"
# how a file tpexplain wrote is recognised, per format: a mark in its first bytes (the PDF's is in its
# trailing info dictionary). CSV files carry no mark (their bytes stay what spreadsheets expect): ours begin
# with one of the headers tpexplain's results write.
_MARKS = {
    "png": b"Software\x00tpexplain",                       # tEXt chunk (savefig metadata)
    "svg": b"<dc:title>tpexplain</dc:title>",               # RDF creator (savefig metadata)
    "jpg": b"\xff\xfe\x00\x0btpexplain",                    # JPEG COM segment
    "jpeg": b"\xff\xfe\x00\x0btpexplain",
    "pdf": b"/Creator (tpexplain)",                         # info dictionary (savefig metadata)
    "html": b'<meta name="generator" content="tpexplain">',
    "htm": b'<meta name="generator" content="tpexplain">',
    "json": b'"generator": "tpexplain"',                    # the first key of every JSON tpexplain writes
}
# a checkpoint (.pth, .pt) is replaced only by another checkpoint: see made_by_tpexplain
CSV_HEADERS = (
    "keypoint,layer,entropy,entropy_max,distance_px,distance_body,mass_within,radius_px",   # LayerStudy
    "region,mass_before,mass_after,shift",                                             # OcclusionStudy
    "keypoint,row,col,y,x,window,drop",                                                # SensitivityMap
)


def savefig_kwargs(fmt: str) -> dict:
    """What `Figure.savefig` needs to mark a figure of format `fmt` as written by tpexplain."""
    fmt = fmt.lower()
    if fmt == "png":
        return {"metadata": {"Software": GENERATOR}}
    if fmt in ("pdf", "svg"):
        return {"metadata": {"Creator": GENERATOR}}
    if fmt in ("jpg", "jpeg"):
        return {"pil_kwargs": {"comment": GENERATOR}}
    return {}


def made_by_tpexplain(path: str | Path) -> bool:
    """Whether the regular file at `path` carries tpexplain's mark for its format (see `_MARKS`)."""
    path = Path(path)
    ext = path.suffix.lstrip(".").lower()
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
            if ext == "pdf":
                f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
                return _MARKS["pdf"] in f.read()
    except OSError:
        return False
    if ext == "csv":
        first = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        return first in CSV_HEADERS or any(first.startswith(h + ",") for h in CSV_HEADERS)   # + added columns
    if ext in FORMATS["checkpoint"]:
        # torch.save's zip cannot carry a mark: a PyTorch checkpoint may be replaced by another one
        return head.startswith(b"PK\x03\x04") and b"/data.pkl" in head[:200]
    mark = _MARKS.get(ext)
    return mark is not None and mark in head


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def require_regular_file(path: str | Path, what: str = "file") -> Path:
    """`path` if it is a regular file (after symlinks); a one-line ValueError naming `what` otherwise.

    Call it before opening an input: opening a FIFO blocks forever, and a device never ends.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} is a {_file_kind(st.st_mode)}, not a regular file: {path}")
    return path


def _same_file(a: Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_output(path: str | Path, inputs=(), kind: str | None = None, force: bool = False,
                 option: str | None = None) -> Path:
    """Check `path` against the output policy before any work; returns it as a Path.

    `inputs`: the run's input files (never written over, even with `force`); `kind`: a key of FORMATS
    (the extension must be one of its formats); `force`: replace an existing regular file that tpexplain
    did not write; `option`: how the user named this output (for the messages).
    """
    path = Path(path)
    name = f"{option} {path}" if option else f"output {path}"
    if kind is not None:
        ext = path.suffix.lstrip(".").lower()
        if ext not in FORMATS[kind]:
            allowed = ", ".join(f".{e}" for e in FORMATS[kind])
            raise ValueError(f"{name}: a {kind} file must end in {allowed} (got '{path.suffix or 'no extension'}')")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ValueError(f"cannot use {name}: {exc.strerror}") from None
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name} is a {_file_kind(st.st_mode)}: only regular files are replaced")
        for source in inputs:
            if source is not None and _same_file(path, source):
                raise ValueError(f"{name} is an input of this command: refusing to write over it")
        if not force and not made_by_tpexplain(path):
            raise ValueError(f"{name} exists and was not written by tpexplain: use --force to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output folder is not writable: {parent}")
    return path


def check_output_dir(path: str | Path, option: str | None = None, parents: bool = False) -> Path:
    """A folder to write into: absent (its parent must exist, or with `parents` its nearest existing
    ancestor be a folder) or a folder; anything else is an error."""
    path = Path(path)
    name = f"{option} {path}" if option else f"output folder {path}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = path.absolute().parent
        while parents and not os.path.lexists(parent) and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise ValueError(f"{name}: its parent folder does not exist: {parent}") from None
        return path
    except OSError as exc:
        raise ValueError(f"cannot use {name}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{name} is a {'file' if stat.S_ISREG(st.st_mode) else _file_kind(st.st_mode)}, "
                         "not a folder")
    if not os.access(path, os.W_OK):
        raise ValueError(f"output folder is not writable: {path}")
    return path


def read_image(path: str | Path) -> np.ndarray:
    """Any image OpenCV reads (grayscale, RGBA, 16-bit, …) as RGB uint8; ValueError with a reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"image not found: {path}")
    if path.is_dir():
        raise ValueError(f"expected an image file, got a directory: {path}")
    require_regular_file(path, "image")
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


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent or ".")
    except OSError as exc:
        raise OSError(f"could not write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600; give it the mode open() would have (the umask's, or the replaced file's)
        os.chmod(tmp, _mode_for(path))
        if os.path.exists(path) and not os.path.isfile(path):   # os.replace would swap a device for a file
            raise OSError(f"could not write {path}: it is a {_file_kind(os.stat(path).st_mode)}, "
                          "not a regular file")
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno is None:      # already ours
            raise
        # a full disk, a vanished folder, ...: one line naming the output (the previous file is untouched)
        raise OSError(f"could not write {path}: {exc.strerror or exc}") from None
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


def parse_bbox(text: str, image_shape: tuple[int, ...] | None = None, name: str = "bbox",
               overlap: bool = True) -> tuple[float, float, float, float]:
    """'x,y,w,h' → floats; the box must have a positive size, finite values below MAX_COORD and, given the
    image's shape, stay within BOX_FACTOR image sides of it and (with `overlap`) overlap it. `name` is the
    option or field named in the messages."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"bad {name} '{text}': expected four numbers x,y,w,h") from None
    if not all(np.isfinite((x, y, w, h))) or w <= 0 or h <= 0:
        raise ValueError(f"bad {name} '{text}': width and height must be positive numbers")
    if max(abs(x), abs(y), w, h) > MAX_COORD:
        raise ValueError(f"bad {name} '{text}': values must lie within ±{MAX_COORD:g} pixels")
    if image_shape is not None:
        ih, iw = image_shape[:2]
        if overlap and (x >= iw or y >= ih or x + w <= 0 or y + h <= 0):
            raise ValueError(f"{name} '{text}' lies outside the {iw}x{ih} image")
        limit = BOX_FACTOR * max(iw, ih)
        if max(abs(x), abs(y), w, h) > limit:
            raise ValueError(f"{name} '{text}' is far larger than the {iw}x{ih} image (values must lie within "
                             f"±{limit} pixels)")
    return x, y, w, h


def _numbers(values, count: int | None) -> list[float] | None:
    """`values` as a list of finite floats (of length `count`, if given); None when they are not."""
    if not isinstance(values, (list, tuple)) or (count is not None and len(values) != count):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    out = [float(v) for v in values]
    return out if all(math.isfinite(v) and abs(v) <= MAX_COORD for v in out) else None


def finite_box(values, what: str) -> tuple[float, float, float, float]:
    """Four finite numbers [x, y, w, h] within ±MAX_COORD as floats; a one-line ValueError naming `what` otherwise.
    (A non-positive size is left to the caller: COCO files hold empty boxes that readers skip.)"""
    box = _numbers(list(values) if isinstance(values, (list, tuple)) else values, 4)
    if box is None:
        raise ValueError(f"{what}: bbox must be four finite numbers [x, y, w, h] within ±{MAX_COORD:g}, "
                         f"got {str(values)[:80]}")
    return tuple(box)


def check_annotation(ann: dict, where: str) -> None:
    """Refuse a COCO annotation whose `bbox`, `keypoints` or `area` are not finite numbers in range
    (one-line ValueError naming `where`, the annotation and the field); a missing field is left to the caller."""
    label = f"{where}: annotation {ann.get('id', '?')!r}"
    if "bbox" in ann:
        finite_box(ann["bbox"], label)
    if "keypoints" in ann:
        kp = ann["keypoints"]
        if _numbers(kp, None) is None or len(kp) % 3:
            raise ValueError(f"{label}: keypoints must be finite numbers x, y, v (three per keypoint) "
                             f"within ±{MAX_COORD:g}")
        if any(v not in (0, 1, 2) for v in kp[2::3]):
            raise ValueError(f"{label}: keypoints' visibility flags must be 0, 1 or 2")
    if "area" in ann:
        area = _numbers([ann["area"]], 1)
        if area is None or area[0] < 0:
            raise ValueError(f"{label}: area must be a finite number >= 0")


def read_coco(path: str | Path):
    """A COCO annotation file as pycocotools' `COCO` (the one COCO reader), loaded quietly.

    Errors are one-line ValueErrors naming the file: not JSON, or no 'images'/'annotations' lists.
    """
    from pycocotools.coco import COCO
    path = require_regular_file(path, "annotation file")
    try:
        with contextlib.redirect_stdout(io.StringIO()):     # pycocotools narrates its loading on stdout
            coco = COCO(str(path))
    except (ValueError, UnicodeDecodeError) as exc:         # json's errors are ValueErrors
        raise ValueError(f"not a COCO annotation file: {path} (not a JSON file: {exc})") from None
    except (AssertionError, KeyError, TypeError) as exc:    # pycocotools asserts the top level is a dict
        raise ValueError(f"not a COCO annotation file: {path} ({exc})") from None
    for key in ("images", "annotations"):
        if not isinstance(coco.dataset.get(key), list):
            raise ValueError(f"not a COCO annotation file: {path} ('{key}' missing or not a list)")
    return coco


def read_detections(path: str | Path) -> list[dict]:
    """A COCO detection-results file (a JSON list of {image_id, category_id, bbox [x, y, w, h], score}),
    checked: a one-line ValueError naming the file and the first bad entry. category_id defaults to 1."""
    path = require_regular_file(path, "detections file")
    try:
        dets = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"cannot read detections {path}: {str(e).splitlines()[0] if str(e) else e}") from None
    expected = "a JSON list of {image_id, category_id, bbox: [x, y, w, h], score}"
    if not isinstance(dets, list):
        raise ValueError(f"{path} is not COCO detection results: expected {expected}")

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    for i, d in enumerate(dets):
        problem = ("not an object" if not isinstance(d, dict) else
                   "no image_id" if "image_id" not in d or isinstance(d["image_id"], (dict, list)) else
                   "bbox is not four finite numbers" if not (isinstance(d.get("bbox"), list)
                                                             and len(d["bbox"]) == 4
                                                             and all(number(v) for v in d["bbox"])) else
                   "score is not a finite number" if not number(d.get("score")) else
                   "category_id is not a number" if not number(d.get("category_id", 1)) else None)
        if problem:
            raise ValueError(f"{path} is not COCO detection results: entry {i + 1}: {problem} (expected {expected})")
    return dets
