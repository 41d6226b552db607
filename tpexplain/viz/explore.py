"""A self-contained interactive page: click any point of the person's crop and see its dependency map at
every layer. No network, no server: the crop, the attention and the script are all inside one HTML file.

Storage: for each layer, the head-mean attention rows of the stored query positions over the visual
tokens, each row quantised to uint8 against its own maximum (the per-row scale kept as float32) and
base64-encoded. TransPose-R's 768 tokens x 4 layers take ~2.4 MB. Larger grids (TransPose-H's 3072 tokens)
keep every 2nd query row and column (a click uses the nearest stored query) and, above a size budget,
sum keys over 2x2 blocks; the page says so.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from ..explanation import Explanation

MAX_QUERIES = 1024                  # query positions stored per layer
MAX_BYTES = 8 * 2**20               # quantised attention bytes in a page before keys are pooled


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
                 max_bytes: int = MAX_BYTES, title: str | None = None) -> ExplorerPage:
    """The interactive page for one Explanation (`keypoints`: those offered in its list, default all)."""
    return ExplorerPage(explorer_html(ex, keypoints, max_queries, max_bytes, title))


def explorer_data(ex: Explanation, keypoints: list[str] | None = None, max_queries: int = MAX_QUERIES,
                  max_bytes: int = MAX_BYTES) -> dict:
    """Everything the page's script needs, JSON-ready (arrays as base64)."""
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
    return {
        "model": ex.model_name, "width": w, "height": h, "grid": [gh, gw], "stride": list(lay.stride),
        "step": step, "queryRows": q_rows, "queryCols": q_cols, "pool": pool, "keyGrid": [kh, kw],
        "layers": layers, "keypointLayers": kp_layers,
        "keypoints": [{"name": n, "x": round(float(kc[k, 0]), 2), "y": round(float(kc[k, 1]), 2),
                       "score": round(float(ex.keypoints[k, 2]), 4)} for n, k in zip(names, kp_index)],
        "pose": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                 for (x, y), s in zip(kc, ex.keypoints[:, 2])],
        "skeleton": [list(p) for p in ex.keypoint_set.skeleton],
        "image": "data:image/png;base64," + base64.b64encode(png.tobytes()).decode(),
        "lut": base64.b64encode(lut.tobytes()).decode(),
    }


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
                  max_bytes: int = MAX_BYTES, title: str | None = None) -> str:
    """The page as a string (see module doc)."""
    data = explorer_data(ex, keypoints, max_queries, max_bytes)
    gh, gw = data["grid"]
    notes = []
    if data["step"] > 1:
        notes.append(f"queries stored every {data['step']} tokens ({len(data['queryRows'])}x{len(data['queryCols'])} "
                     f"of the {gh}x{gw} grid): a click uses the nearest stored query")
    if data["pool"] > 1:
        notes.append(f"keys summed over {data['pool']}x{data['pool']} token blocks "
                     f"({data['keyGrid'][0]}x{data['keyGrid'][1]} map)")
    notes.append("values quantised to 8 bits per row")
    heading = f"{title} · {ex.model_name}" if title else ex.model_name
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (_PAGE.replace("__TITLE__", html.escape(heading))
            .replace("__NOTES__", html.escape("; ".join(notes)))
            .replace("__DATA__", payload))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="tpexplain">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>__TITLE__ · tpexplain explorer</title>
<style>
body{font-family:system-ui,sans-serif;margin:12px;color:#222;background:#fafafa}
h1{font-size:16px;margin:0 0 6px}
#controls{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin:6px 0}
#panels{display:flex;gap:10px;flex-wrap:wrap}
.panel{background:#fff;border:1px solid #ddd;padding:4px;text-align:center;font-size:12px}
canvas{cursor:crosshair;display:block}
#kps{max-height:480px;overflow:auto;border:1px solid #ddd;background:#fff;min-width:120px}
#kps div{padding:2px 6px;cursor:pointer;font-size:13px}#kps div:hover{background:#eef}
#kps div.sel{background:#36c;color:#fff}
#main{display:flex;gap:12px;align-items:flex-start}
#info,#notes{font-size:12px;color:#555;margin:4px 0}
</style></head><body>
<h1>__TITLE__</h1>
<div id="controls">
 <label><input type="radio" name="kind" value="dependency" checked> dependency (row)</label>
 <label><input type="radio" name="kind" value="affected"> affected area (column)</label>
 <label>opacity <input id="alpha" type="range" min="0" max="100" value="70"></label>
 <label><input id="pose" type="checkbox" checked> pose</label>
</div>
<div id="info">Click any point of an image, or pick a keypoint.</div>
<div id="main"><div id="kps"></div><div id="panels"></div></div>
<div id="notes">Head mean; each panel scaled to its own minimum and maximum. __NOTES__.</div>
<script>
"use strict";
const D = __DATA__;
function bytes(b64){const s=atob(b64), a=new Uint8Array(s.length); for(let i=0;i<s.length;i++) a[i]=s.charCodeAt(i); return a;}
function floats(b64){return new Float32Array(bytes(b64).buffer);}
const LUT = bytes(D.lut);
const K = D.keyGrid[0]*D.keyGrid[1], QC = D.queryCols.length, QR = D.queryRows.length;
const layers = D.layers.map(l => ({q: bytes(l.data), s: floats(l.scale)}));
const kpLayers = D.keypointLayers.map(l => ({q: bytes(l.data), s: floats(l.scale)}));
const img = new Image();
const state = {kind: "dependency", query: 0, point: null, keypoint: null, alpha: 0.7, pose: true};
const panels = [];

function nearestQuery(x, y){
  const r = Math.min(Math.max(Math.floor(y / D.stride[0]), 0), D.grid[0]-1);
  const c = Math.min(Math.max(Math.floor(x / D.stride[1]), 0), D.grid[1]-1);
  const qr = Math.min(Math.round(r / D.step), QR-1), qc = Math.min(Math.round(c / D.step), QC-1);
  return qr * QC + qc;
}
function queryCentre(q){
  const r = D.queryRows[Math.floor(q / QC)], c = D.queryCols[q % QC];
  return [(c + 0.5) * D.stride[1], (r + 0.5) * D.stride[0]];
}
function mapFor(l){
  // returns [values, rows, cols] of the map to draw for layer l
  const L = layers[l];
  if (state.kind === "dependency"){
    let src = L, row = state.query;
    if (state.keypoint !== null && kpLayers.length){ src = kpLayers[l]; row = state.keypoint; }
    const out = new Float32Array(K), s = src.s[row] / 255, off = row * K;
    for (let j = 0; j < K; j++) out[j] = src.q[off + j] * s;
    return [out, D.keyGrid[0], D.keyGrid[1]];
  }
  // affected area: the column of the key under the query, over the stored queries
  const [x, y] = state.point || queryCentre(state.query);
  const kr = Math.min(Math.floor(y / D.stride[0] / D.pool), D.keyGrid[0]-1);
  const kc = Math.min(Math.floor(x / D.stride[1] / D.pool), D.keyGrid[1]-1);
  const j = kr * D.keyGrid[1] + kc, n = QR * QC, out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = L.q[i * K + j] * L.s[i] / 255;
  return [out, QR, QC];
}
function draw(){
  const [qx, qy] = state.point || queryCentre(state.query);
  panels.forEach((p, l) => {
    const [v, rows, cols] = mapFor(l);
    let lo = Infinity, hi = -Infinity;
    for (const a of v){ if (a < lo) lo = a; if (a > hi) hi = a; }
    const span = hi > lo ? hi - lo : 1e-12;
    const small = document.createElement("canvas"); small.width = cols; small.height = rows;
    const sctx = small.getContext("2d"), im = sctx.createImageData(cols, rows);
    for (let i = 0; i < v.length; i++){
      const t = Math.round((v[i] - lo) / span * 255);
      im.data[4*i] = LUT[3*t]; im.data[4*i+1] = LUT[3*t+1]; im.data[4*i+2] = LUT[3*t+2]; im.data[4*i+3] = 255;
    }
    sctx.putImageData(im, 0, 0);
    const ctx = p.canvas.getContext("2d");
    ctx.globalAlpha = 1; ctx.drawImage(img, 0, 0, D.width, D.height);
    ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
    ctx.globalAlpha = state.alpha;
    // the stored grid covers whole tokens: stretch it over the tokens' extent (bilinear, as the figures)
    const ext = state.kind === "dependency" ? [D.keyGrid[1]*D.pool*D.stride[1], D.keyGrid[0]*D.pool*D.stride[0]]
                                            : [QC*D.step*D.stride[1], QR*D.step*D.stride[0]];
    ctx.drawImage(small, 0, 0, ext[0], ext[1]);
    ctx.globalAlpha = 1;
    if (state.pose) drawPose(ctx);
    star(ctx, qx, qy);
    p.label.textContent = "layer " + (l + 1) + "  (max " + hi.toPrecision(3) + ")";
  });
  const what = state.keypoint !== null ? D.keypoints[state.keypoint].name : "point";
  const tr = Math.min(Math.floor(qy / D.stride[0]), D.grid[0]-1), tc = Math.min(Math.floor(qx / D.stride[1]), D.grid[1]-1);
  document.getElementById("info").textContent = what + " at crop (" + qx.toFixed(0) + ", " + qy.toFixed(0) +
      "), token row " + tr + " col " + tc + " · " + state.kind;
  document.body.dataset.query = state.query; document.body.dataset.kind = state.kind;
  document.body.dataset.keypoint = state.keypoint === null ? "" : D.keypoints[state.keypoint].name;
  document.querySelectorAll("#kps div").forEach((d, i) => d.classList.toggle("sel", i === state.keypoint));
}
function drawPose(ctx){
  ctx.lineWidth = 1.5;
  for (const [a, b] of D.skeleton){
    const p = D.pose[a], q = D.pose[b];
    ctx.strokeStyle = "rgba(255,255,255,0.8)"; ctx.beginPath(); ctx.moveTo(p[0], p[1]); ctx.lineTo(q[0], q[1]); ctx.stroke();
  }
  for (const p of D.pose){ ctx.fillStyle = "#1f77ff"; ctx.beginPath(); ctx.arc(p[0], p[1], 2.5, 0, 6.3); ctx.fill(); }
}
function star(ctx, x, y){
  ctx.beginPath();
  for (let i = 0; i < 10; i++){
    const r = i % 2 ? 3.5 : 8, a = Math.PI / 5 * i - Math.PI / 2;
    ctx.lineTo(x + r * Math.cos(a), y + r * Math.sin(a));
  }
  ctx.closePath(); ctx.fillStyle = "#fff"; ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.fill(); ctx.stroke();
}
function selectPoint(x, y){ state.point = [x, y]; state.query = nearestQuery(x, y); state.keypoint = null; draw(); }
function selectKeypoint(i){
  const k = D.keypoints[i]; state.keypoint = i; state.point = [k.x, k.y]; state.query = nearestQuery(k.x, k.y); draw();
}
function build(){
  const box = document.getElementById("panels");
  D.layers.forEach((_, l) => {
    const div = document.createElement("div"); div.className = "panel";
    const canvas = document.createElement("canvas"); canvas.width = D.width; canvas.height = D.height;
    canvas.id = "layer" + l;
    const label = document.createElement("div");
    canvas.addEventListener("click", e => {
      const r = canvas.getBoundingClientRect();
      selectPoint((e.clientX - r.left) * D.width / r.width, (e.clientY - r.top) * D.height / r.height);
    });
    div.appendChild(canvas); div.appendChild(label); box.appendChild(div); panels.push({canvas, label});
  });
  const list = document.getElementById("kps");
  D.keypoints.forEach((k, i) => {
    const d = document.createElement("div"); d.textContent = k.name + "  " + k.score.toFixed(2);
    d.title = "predicted at crop (" + k.x.toFixed(0) + ", " + k.y.toFixed(0) + ")";
    d.addEventListener("click", () => selectKeypoint(i)); list.appendChild(d);
  });
  document.querySelectorAll("input[name=kind]").forEach(r => r.addEventListener("change", e => { state.kind = e.target.value; draw(); }));
  document.getElementById("alpha").addEventListener("input", e => { state.alpha = e.target.value / 100; draw(); });
  document.getElementById("pose").addEventListener("change", e => { state.pose = e.target.checked; draw(); });
  if (D.keypoints.length) selectKeypoint(0); else selectPoint(D.width / 2, D.height / 2);
  window.tpxReady = true;
}
img.onload = build;
img.src = D.image;
window.tpx = {data: D, state, selectPoint, selectKeypoint, draw};
</script></body></html>
"""
