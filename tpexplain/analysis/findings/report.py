"""The findings report as files: report.md, a self-contained report.html (figures embedded), figures/*.png and
findings.json, written into a temporary folder beside the target and swapped into place, so an interrupted
run leaves no half-written report."""
from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import figures as figs
from .claims import FAILS, HOLDS, UNMEASURED, Claim, Findings
from .measure import Measurements


def check_report_dir(out_dir: str | Path) -> Path:
    """Fail early unless `out_dir` can become the report: absent, empty, or an earlier findings report
    (which is replaced). Any other non-empty folder is refused rather than overwritten."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "findings.json").is_file():
        raise ValueError(f"refusing to write into {out}: the folder is not empty and is not a findings report "
                         "(no findings.json); choose a new folder")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"output folder's parent does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output folder's parent is not writable: {parent}")
    return out


def write_report(result: Findings, out: Path, m: Measurements, stats: dict, studies, rhos, rand) -> None:
    """Write the figures, findings.json, report.md and report.html into a temporary folder beside `out`, then
    swap it into place (an earlier report at `out` is replaced; on any error nothing is left behind)."""
    parent = out.absolute().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        figdir = tmp / "figures"
        figdir.mkdir()
        q = m.queries
        figs.save(figs.fig_activation(q), figdir / "activation_max.png")
        figs.save(figs.fig_person(q, m.example), figdir / "dependency_on_person.png")
        figs.save(figs.fig_regions(q), figdir / "regions_by_type.png")
        figs.save(figs.fig_symmetric(result.claim("limb_joints_use_symmetric_joint")),
                  figdir / "symmetric_reliance.png")
        figs.save(figs.fig_depth(q, m.num_layers), figdir / "depth.png")
        figs.save(figs.fig_occlusion(q, studies), figdir / "occlusion.png")
        figs.save(figs.fig_mean_maps(m, stats, m.example.input_size), figdir / "mean_maps.png", dpi=70)
        figs.save(figs.fig_agreement(rhos), figdir / "agreement.png")
        if rand is not None:
            figs.save(rand.figure(), figdir / "randomisation.png")
        figs.save(m.example.grid(layers=[-1]), figdir / "example_dependencies.png", dpi=55)
        for c in result.claims:
            if c.figure and not (tmp / c.figure).exists():
                c.figure = None
        result.meta["figures"] = sorted(f"figures/{p.name}" for p in figdir.iterdir())
        (tmp / "findings.json").write_text(json.dumps(result.to_dict(), indent=1, allow_nan=False))
        blocks = _report_blocks(result)
        (tmp / "report.md").write_text(_markdown(blocks))
        (tmp / "report.html").write_text(_html(blocks, tmp))
        _publishable(tmp)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.replace(out, old / "report")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publishable(root: Path) -> None:
    """Temporary files are private (0600/0700); give the report the usual permissions under the umask."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [root, *root.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _report_blocks(f: Findings) -> list[tuple]:
    meta = f.meta
    b: list[tuple] = [("h1", f"Findings: {meta['model']}")]
    b.append(("p", f"Model **{meta['model']}** ({meta['layers']} encoder layers, token grid "
                   f"{meta['token_grid'][0]}x{meta['token_grid'][1]}) on {meta['data']}: "
                   f"{meta['people_analysed']} people analysed of {meta['people_asked']} read "
                   f"({len(meta['skipped'])} skipped or partly skipped), {meta['queries']} keypoint queries; "
                   f"occlusion-based parts on {meta['occlusion_people']} people. Flip test "
                   f"{'on' if meta['flip'] else 'off'}. {meta['seconds']} s."))
    if meta.get("command"):
        b.append(("p", "Regenerate with:"))
        b.append(("code", meta["command"]))
    b.append(("h2", "Method"))
    b.append(("p", "Each person is cropped with its ground-truth box. The query of keypoint k is the model's "
                   "predicted location of k (the heatmap maximum, as in the paper's activation-maximum view); only "
                   "keypoints labelled in the ground truth are queried. A dependency map is the attention row of the "
                   "query's token (mean of heads). Accuracy uses the ground-truth keypoints with their visibility "
                   "flags (v=2 visible, v=1 occluded). Body regions are discs of radius r (a tenth of the person's "
                   "size, at least one token) around the ground-truth joints where labelled (predicted ones "
                   "elsewhere), plus the bones and the torso; each token belongs to one region, in the order own "
                   "joint, mirror joint, neighbours, head, rest of the body, background."))
    b.append(("p", "Every claim below states its statistic and its criterion before its result. The criteria are "
                   "constants in `tpexplain/analysis/findings/claims.py`, fixed before any model was measured; a claim "
                   "that fails for this model is reported as failing."))
    sections: dict[str, list[Claim]] = {}
    for c in f.claims:
        sections.setdefault(c.section, []).append(c)
    for section, claims in sections.items():
        b.append(("h2", section))
        for c in claims:
            b.append(("h3", c.statement))
            b.append(("p", f"**Statistic.** {c.statistic}"))
            b.append(("p", f"**Criterion.** {c.criterion}"))
            b.append(("p", f"**Result.** {_fmt(c.value)} → **{c.verdict}**. {_detail_line(c)}"))
            if c.figure:
                b.append(("img", c.figure, c.statement))
    b.append(("h2", "Example: last-layer dependency maps of the first person"))
    b.append(("img", "figures/example_dependencies.png", "dependency maps, last layer"))
    b.append(("h2", "Summary"))
    b.append(("table", ["claim", "statistic", "criterion", "verdict"],
              [[c.id, _fmt(c.value), c.criterion.split(";")[0], c.verdict] for c in f.claims]))
    if meta["skipped"]:
        b.append(("h2", "Skipped"))
        b.append(("list", [f"{s['image']} (annotation {s['annotation_id']}): {s['reason']}" for s in meta["skipped"]]))
    b.append(("p", "All numbers, including every query's, are in `findings.json`."))
    return b


def _detail_line(c: Claim) -> str:
    d = c.details
    parts = {
        "activation_max_on_keypoint": lambda: f"{d['num_visible']} visible keypoints; median error "
                                              f"{_fmt(d['median_error_body'])} box sizes.",
        "dependency_on_person": lambda: f"{d['num_queries']} queries; mean mass on the person "
                                        f"{_fmt(d['mean_person_mass'])} vs its area share {_fmt(d['mean_person_area'])}.",
        "head_joints_on_head": lambda: f"{d['num_queries']} head queries; the head covers "
                                       f"{_fmt(d['mean_head_area'])} of the grid on average.",
        "limb_joints_use_symmetric_joint": lambda: "index by type: " + ", ".join(
            f"{k} {_fmt(v, 2)}" for k, v in d["symmetric_reliance_index"].items()) + ".",
        "finer_with_depth_distance": lambda: _depth_line(d),
        "finer_with_depth_entropy": lambda: _depth_line(d),
        "occluded_keypoints_found": lambda: f"{d['num_occluded']} occluded keypoints; visible PCK "
                                            f"{_fmt(d['pck_visible'])} ({d['num_visible']}).",
        "hidden_keypoint_uses_other_cues": lambda: f"{d['hidden_keypoints']} hidden keypoints, sign test p = "
                                                   f"{_fmt(d['sign_test_p'])}; own-region share changes by "
                                                   f"{_fmt(d['mean_shift_by_region']['own'])}; still found after "
                                                   f"hiding: {_fmt(d['still_found_after_hiding'])}.",
        "dependencies_image_specific": lambda: f"{d['maps']} maps; mean spread (total variation to the mean map) "
                                               f"{_fmt(d['mean_spread_tv'])}.",
        "dependencies_share_commonalities": lambda: f"{d['maps']} maps; mean r with own type's mean "
                                                    f"{_fmt(d['mean_r_own'])}, with other types' {_fmt(d['mean_r_other'])}.",
        "randomisation_changes_maps": lambda: "mean rho by step: " + ", ".join(
            f"{s['step']} {_fmt(s['spearman_dependency'], 2)}" for s in d["steps"]) + "; rollout maps: " + ", ".join(
            f"{_fmt(s['spearman_rollout'], 2)}" for s in d["steps"]) + ".",
        "attention_agrees_with_occlusion": lambda: f"{d['keypoints']} keypoints; median rho of the first layer "
                                                   f"{_fmt(d['median_rho_first_layer'])}, of rollout "
                                                   f"{_fmt(d['median_rho_rollout'])}.",
    }
    try:
        return parts[c.id]() if c.id in parts and d else ""
    except (KeyError, TypeError):
        return ""


def _depth_line(d: dict) -> str:
    layers = ", ".join(f"L{i + 1} {_fmt(v)}" for i, v in enumerate(d["mean_by_layer"]))
    return (f"falls for {d['people_falling']} of {d['people']} people, sign test p = {_fmt(d['sign_test_p'])}; "
            f"mean by layer: {layers} (relative fall {_fmt(d['relative_fall'])}).")


def _markdown(blocks: list[tuple]) -> str:
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + blk[1])
        elif kind == "p":
            out.append(blk[1])
        elif kind == "code":
            out.append(f"```\n{blk[1]}\n```")
        elif kind == "img":
            out.append(f"![{blk[2]}]({blk[1]})")
        elif kind == "list":
            out.append("\n".join(f"- {x}" for x in blk[1]))
        elif kind == "table":
            header, rows = blk[1], blk[2]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def _html(blocks: list[tuple], root: Path) -> str:
    body = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{_inline(blk[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(blk[1])}</p>")
        elif kind == "code":
            body.append(f"<pre>{html.escape(blk[1])}</pre>")
        elif kind == "img":
            data = base64.b64encode((root / blk[1]).read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(blk[2])}">'
                        f"<figcaption>{html.escape(blk[1])}</figcaption></figure>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in blk[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in blk[1])
            rows = "".join("<tr>" + "".join(f"<td class='{_cls(c)}'>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                           for r in blk[2])
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45;padding:0 1em}"
             "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
             "td.holds{background:#dfd}td.fails{background:#fdd}td.unmeasured{background:#eee}"
             "pre{background:#f4f4f4;padding:.5em;overflow-x:auto}figcaption{color:#666;font-size:.8em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>tpexplain findings</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _cls(cell) -> str:
    return {HOLDS: "holds", FAILS: "fails", UNMEASURED: "unmeasured"}.get(cell, "")

