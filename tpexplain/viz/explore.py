"""A self-contained interactive page: click any point of the person's crop and see its dependency map at
every layer. No network, no server: the crop, the attention and the script are all inside one HTML file.

Storage: for each layer, the head-mean attention rows of the stored query positions over the visual
tokens, each row quantised to uint8 against its own maximum (the per-row scale kept as float32) and
base64-encoded. TransPose-R's 768 tokens x 4 layers take ~2.4 MB. Larger grids (TransPose-H's 3072 tokens)
keep every 2nd query row and column (a click or keypoint uses the nearest stored query) and, above a size budget,
sum keys over 2x2 blocks; the page says so.

A keypoint picked from the list queries the token of the explanation's query convention (`--query`:
"official", TransPose's visualisation rule, or "geometric", the token under the keypoint; docs/fidelity.md),
for both its dependency row and its affected-area column; the page names the convention and the token.
TokenPose keypoints query their own keypoint token. A click queries the token under the clicked point.

The page names the person (`Explanation.meta`: image, person, model, weights) in its title, and draws the
ground truth (dashed, white squares at the labelled joints) when the explanation has one, with its OKS/PCK.
"""
from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from ..explanation import Explanation

MAX_QUERIES = 1024                  # query positions stored per layer
MAX_BYTES = 8 * 2**20               # quantised attention bytes in a page before keys are pooled
QUERY_NOTES = {
    "official": "a keypoint queries the token of TransPose's visualisation, int((4·x_hm + 0.5) / stride) from its "
                "heatmap prediction (official query; docs/fidelity.md), which can be next to the token under the star",
    "geometric": "a keypoint queries the token under its position in the crop (geometric query)",
    "keypoint token": "a keypoint's dependency map is its own keypoint token's row",
}


class ExplorerPage:
    """The page's HTML; `save(path)` writes it, and a notebook shows it inline (in a sandboxed iframe)."""

    def __init__(self, html_text: str):
        self.html = html_text

    def save(self, path: str | Path, force: bool = False, inputs=()) -> Path:
        """Write the page by the output policy (`tpexplain.io.check_output`: an .html name; an existing file
        replaced only if tpexplain wrote it, or with `force`; never one of `inputs`)."""
        from ..io import check_output, write_text_atomic
        path = check_output(path, inputs, kind="html", force=force)
        write_text_atomic(path, self.html)
        path.chmod(0o644)
        return path

    def __len__(self) -> int:
        return len(self.html)

    def _repr_html_(self) -> str:
        return (f"<iframe srcdoc=\"{html.escape(self.html, quote=True)}\" style=\"width:100%;height:640px;"
                "border:1px solid #ddd\" sandbox=\"allow-scripts\"></iframe>")


def explore_page(ex: Explanation, keypoints: list[str] | None = None, max_queries: int = MAX_QUERIES,
                 max_bytes: int = MAX_BYTES, title: str | None = None, query: str | None = None) -> ExplorerPage:
    """The interactive page for one Explanation (`keypoints`: those offered in its list, default all;
    `query`: a keypoint's query convention, default the explanation's)."""
    return ExplorerPage(explorer_html(ex, keypoints, max_queries, max_bytes, title, query))


def explorer_data(ex: Explanation, keypoints: list[str] | None = None, max_queries: int = MAX_QUERIES,
                  max_bytes: int = MAX_BYTES, query: str | None = None) -> dict:
    """Everything the page's script needs, JSON-ready (arrays as base64)."""
    query = ex.query_convention if query is None else query
    lay = ex.layout
    gh, gw = lay.grid
    ns = len(lay.special)
    step = 1
    while math.ceil(gh / step) * math.ceil(gw / step) > max_queries:
        step += 1
    q_rows, q_cols = list(range(0, gh, step)), list(range(0, gw, step))
    queries = [ns + r * gw + c for r in q_rows for c in q_cols]
    pool = 1
    while len(queries) * math.ceil(gh / pool) * math.ceil(gw / pool) * ex.num_layers > max_bytes and pool < min(gh, gw):
        pool *= 2
    kh, kw = math.ceil(gh / pool), math.ceil(gw / pool)

    names = list(keypoints) if keypoints is not None else list(ex.keypoint_names)
    kp_index = [ex.keypoint(k) for k in names]
    layers, kp_layers = [], []
    for att in ex.attention:
        rows = _visual(att.rows(queries)[0].mean(0), ns, gh, gw, pool, kh, kw)   # (Q, kh*kw)
        layers.append(_quantise(rows))
        if ns:   # TokenPose: a keypoint's dependency map is its own token's row
            special = [lay.special.index(ex.keypoint_names[k]) for k in kp_index]
            kp_layers.append(_quantise(_visual(att.rows(special)[0].mean(0), ns, gh, gw, pool, kh, kw)))

    h, w = ex.input_size
    ok, png = cv2.imencode(".png", cv2.cvtColor(ex.crop_image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the crop image")
    from matplotlib import colormaps
    from ..figures import CMAP
    lut = (colormaps[CMAP](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    kc = ex.keypoints_crop
    gt = ex.ground_truth_at("crop")
    accuracy = ex.meta.get("accuracy") or {}
    return {
        "about": {**{k: ex.meta.get(k) for k in ("image", "person", "model", "weights")},
                  **{k: accuracy.get(k) for k in ("oks", "pck")}},
        "groundTruth": None if gt is None else [[round(float(x), 2), round(float(y), 2), int(v > 0)]
                                                for x, y, v in gt],
        "model": ex.model_name, "width": w, "height": h, "grid": [gh, gw], "stride": list(lay.stride),
        "step": step, "queryRows": q_rows, "queryCols": q_cols, "pool": pool, "keyGrid": [kh, kw],
        "layers": layers, "keypointLayers": kp_layers,
        "query": "keypoint token" if ns else query,
        "keypoints": [{"name": n, "x": round(float(kc[k, 0]), 2), "y": round(float(kc[k, 1]), 2),
                       "score": round(float(ex.keypoints[k, 2]), 4), **_queried(ex, k, query)}
                      for n, k in zip(names, kp_index)],
        "pose": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                 for (x, y), s in zip(kc, ex.keypoints[:, 2])],
        "skeleton": [list(p) for p in ex.keypoint_set.skeleton],
        "image": "data:image/png;base64," + base64.b64encode(png.tobytes()).decode(),
        "lut": base64.b64encode(lut.tobytes()).decode(),
    }


def _queried(ex: Explanation, k: int, query: str) -> dict:
    """The visual token a keypoint queries: grid row and column (None for a keypoint token)."""
    info = ex.query_info(k, query=query)
    return {"row": info.get("row"), "col": info.get("col")}


def _visual(rows: torch.Tensor, ns: int, gh: int, gw: int, pool: int, kh: int, kw: int) -> np.ndarray:
    """Rows over the visual tokens only, keys summed over pool x pool blocks."""
    v = rows[:, ns:].float().reshape(-1, gh, gw)
    if pool > 1:
        v = torch.nn.functional.pad(v, (0, kw * pool - gw, 0, kh * pool - gh))
        v = v.reshape(-1, kh, pool, kw, pool).sum((2, 4))
    return v.reshape(v.shape[0], -1).numpy()


def _quantise(rows: np.ndarray) -> dict:
    """uint8 per row against the row's maximum; value = byte / 255 * scale."""
    scale = rows.max(axis=1).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0)[:, None]
    q = np.clip(np.rint(rows / safe * 255.0), 0, 255).astype(np.uint8)
    return {"data": base64.b64encode(q.tobytes()).decode(),
            "scale": base64.b64encode(scale.astype("<f4").tobytes()).decode()}


def explorer_html(ex: Explanation, keypoints: list[str] | None = None, max_queries: int = MAX_QUERIES,
                  max_bytes: int = MAX_BYTES, title: str | None = None, query: str | None = None) -> str:
    """The page as a string (see module doc)."""
    data = explorer_data(ex, keypoints, max_queries, max_bytes, query)
    gh, gw = data["grid"]
    notes = [QUERY_NOTES[data["query"]]]
    if data["step"] > 1:
        notes.append(f"queries stored every {data['step']} tokens ({len(data['queryRows'])}x{len(data['queryCols'])} "
                     f"of the {gh}x{gw} grid): a click or keypoint uses the nearest stored query")
    if data["pool"] > 1:
        notes.append(f"keys summed over {data['pool']}x{data['pool']} token blocks "
                     f"({data['keyGrid'][0]}x{data['keyGrid'][1]} map)")
    notes.append("values quantised to 8 bits per row")
    about = data["about"]
    if data["groundTruth"] is not None:
        scores = ", ".join(f"{k.upper()} {about[k]:.3f}" for k in ("oks", "pck") if about.get(k) is not None)
        notes.append("ground truth dashed, labelled joints as white squares" + (f" ({scores})" if scores else ""))
    weights = about.get("weights")
    model = (about.get("model") or ex.model_name) + ("" if weights is None else " (random weights)"
                                                     if weights == "random" else f" (weights {weights})")
    heading = " · ".join(str(p) for p in (title or about.get("image"), about.get("person"), model) if p)
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = resources.files(__package__).joinpath("assets/explorer.html").read_text(encoding="utf-8")
    return (page.replace("__TITLE__", html.escape(heading))
            .replace("__NOTES__", html.escape("; ".join(notes)))
            .replace("__DATA__", payload))

