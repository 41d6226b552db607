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
from .claims import FAILS, HOLDS, INCONCLUSIVE, NOT_SPECIFIC, TOO_FEW, UNMEASURED, Claim, Findings


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


def write_report(result: Findings, out: Path, records: list[dict], example) -> None:
    """Write the figures, findings.json, report.md and report.html into a temporary folder beside `out`, then
    swap it into place (an earlier report at `out` is replaced; on any error nothing is left behind).
    `records` are the model's per-person records; `example` the first person's Explanation."""
    parent = out.absolute().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        figdir = tmp / "figures"
        figdir.mkdir()
        q = [{**row, "person": i} for i, r in enumerate(records) for row in r.get("queries", [])]
        studies = [h for r in records for h in r.get("hidden", [])]
        figs.save(figs.fig_baselines(result.claims), figdir / "baselines.png")
        figs.save(figs.fig_activation(q), figdir / "activation_max.png")
        figs.save(figs.fig_person(q, example), figdir / "dependency_on_person.png")
        figs.save(figs.fig_regions(q), figdir / "regions_by_type.png")
        figs.save(figs.fig_symmetric(result.numbers["by_type"]), figdir / "symmetric_reliance.png")
        figs.save(figs.fig_depth(q, result.meta["layers"]), figdir / "depth.png")
        figs.save(figs.fig_occlusion(q, studies), figdir / "occlusion.png")
        figs.save(figs.fig_mean_maps(records), figdir / "mean_maps.png")
        figs.save(figs.fig_agreement(result.numbers["agreement"]), figdir / "agreement.png")
        if example is not None:
            # five joints spread over the body (one row of panels after the pose), labelled ones first
            spread = (0, 9, 16, 7, 14, 5, 12, 10, 15, 8, 13, 6, 11, 1, 2, 3, 4)
            labelled = [k for k in spread if example.ground_truth[k, 2] > 0][:5]
            figs.save(example.grid(keypoints=labelled or None, layers=[-1]), figdir / "example_dependencies.png",
                      dpi=110)
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


def _est(value, low, high, cases=None, people=None) -> str:
    text = f"{_fmt(value)} [{_fmt(low)}, {_fmt(high)}]"
    return text + (f" ({cases} cases, {people} people)" if cases is not None else "")


def _report_blocks(f: Findings) -> list[tuple]:
    meta = f.meta
    boot = meta["bootstrap"]
    b: list[tuple] = [("h1", f"Findings: {meta['model']}")]
    b.append(("p", f"Model **{meta['model']}** ({meta['layers']} encoder layers, token grid "
                   f"{meta['token_grid'][0]}x{meta['token_grid'][1]}) on {meta['data']}: "
                   f"{meta['people_analysed']} people analysed of {meta['people_asked']} "
                   f"({len(meta['skipped'])} skipped or partly skipped), {meta['queries']} keypoint queries at "
                   f"ground-truth joints ({meta['queries_correct']} correctly and {meta['queries_wrong']} wrongly "
                   f"predicted at PCK@{meta['pck_alpha']:g}); occlusion parts on {meta['occlusion_people']} people. "
                   f"Boxes: {'detections from ' + meta['detections'] if meta.get('detections') else 'ground truth'}. "
                   f"Flip test {'on' if meta['flip'] else 'off'}. {meta['seconds']} s."))
    if meta.get("command"):
        b.append(("p", "Regenerate with:"))
        b.append(("code", meta["command"]))
    b.append(("h2", "Method"))
    b.append(("p", "Each person is cropped with its box. Claims about a keypoint's attention query the "
                   "**ground-truth joint** (TransPose's token rule applied to the labelled position), so a wrong "
                   "prediction cannot move the query onto the background or a neighbour; they are also reported "
                   "separately for keypoints the model predicts correctly and wrongly. A dependency map is the "
                   "attention row of the query's token (mean of heads). Body regions are discs of radius r (a "
                   "tenth of the person's size, at least one token) around the ground-truth joints, plus the bones "
                   "and the torso. Hidden-joint studies hide the ground-truth joint."))
    bl = meta["baselines"]
    pk = bl["peaked"]
    b.append(("p", "**Null baselines.** Every claim is measured on the same people with two models that learnt "
                   f"nothing: *random*, the same architecture with re-initialised weights (seed {bl['random']['seed']}); "
                   "and *peaked*, that random model with its attention logits scaled (query projection x "
                   f"{_fmt(pk['scale'])}) so that its mean attention entropy matches the model's: target "
                   f"{_fmt(pk['target_entropy'], 4)} nats on the first {meta['criteria']['CALIBRATION_PEOPLE']['value']} "
                   f"people, achieved {_fmt(pk['achieved_entropy'], 4)} (unscaled random: "
                   f"{_fmt(pk['random_entropy'], 4)}); over all people the model's mean is "
                   f"{_fmt(pk['model_mean_entropy_all_people'], 4)} and the peaked baseline's "
                   f"{_fmt(pk['mean_entropy_all_people'], 4)}. By layer (model / random / peaked): " + "; ".join(
                       f"L{i + 1} {_fmt(a)} / {_fmt(r)} / {_fmt(p)}" for i, (a, r, p) in enumerate(zip(
                           bl["model_mean_entropy_by_layer"], bl["random"]["mean_entropy_by_layer"],
                           pk["mean_entropy_by_layer"]))) + "."))
    b.append(("p", f"**Uncertainty and verdicts.** Every statistic has a {boot['confidence']:.0%} percentile "
                   f"bootstrap interval over people ({boot['resamples']} resamples, seed {boot['seed']}; people, not "
                   "keypoints, are the independent cases). A claim **holds** only when the model's whole interval "
                   "meets the criterion, no baseline's value meets it, and the model's interval lies apart from "
                   "every baseline's. It is **not specific to training** when a baseline meets the criterion too, "
                   "**does not hold** when the whole interval fails, and **inconclusive** otherwise (the interval "
                   "straddles the criterion, or overlaps a baseline's); **inconclusive (n too small)** below the "
                   "minimum sample sizes."))
    b.append(("h2", "Criteria and sample sizes"))
    b.append(("p", "Fixed in `tpexplain/analysis/findings/criteria.py` before any model was measured; a change is a "
                   "commit of its own, made before re-running."))
    b.append(("table", ["constant", "value", "reason"],
              [[name, _fmt(c["value"]), c["reason"]] for name, c in meta["criteria"].items()]))
    b.append(("h2", "Summary"))
    b.append(("table", ["claim", "model [95% CI]", "cases / people", "criterion", "random [95% CI]",
                        "peaked [95% CI]", "verdict"],
              [[c.id, _est(c.value, *c.interval), f"{c.cases} / {c.people}", c.criterion.split(",")[0],
                *[_est(c.baselines[n].value, c.baselines[n].low, c.baselines[n].high) if n in c.baselines else "n/a"
                  for n in ("random", "peaked")], c.verdict] for c in f.claims]))
    b.append(("img", "figures/baselines.png", "model vs baselines, every claim"))
    sections: dict[str, list[Claim]] = {}
    for c in f.claims:
        sections.setdefault(c.section, []).append(c)
    for section, claims in sections.items():
        b.append(("h2", section))
        for c in claims:
            b.append(("h3", c.statement))
            b.append(("p", f"**Statistic.** {c.statistic}"))
            b.append(("p", f"**Criterion.** {c.criterion}."))
            base = "; ".join(f"{n} {_est(e.value, e.low, e.high)}" for n, e in c.baselines.items())
            b.append(("p", f"**Result.** {_est(c.value, *c.interval, c.cases, c.people)}; baselines: {base} → "
                           f"**{c.verdict}** ({c.reason})."))
            split = [(label, c.details[key]) for key, label in (("correct_predictions", "correctly"),
                                                                ("wrong_predictions", "wrongly"))
                     if key in c.details]
            if split:
                b.append(("p", "At keypoints the model predicts " + "; ".join(
                    f"{label}: {_est(d['value'], *d['interval'], d['cases'], d['people'])}" for label, d in split)
                    + " (no verdict: descriptive)."))
            if c.figure:
                b.append(("img", c.figure, c.statement))
    b.append(("h2", "Example: last-layer dependency maps of the first person"))
    b.append(("p", "At the predicted keypoints (the figure's convention), ground truth drawn beside the prediction."))
    b.append(("img", "figures/example_dependencies.png", "dependency maps, last layer"))
    if meta["skipped"]:
        b.append(("h2", "Skipped"))
        b.append(("list", [f"{s['image']} (annotation {s['annotation_id']}): {s['reason']}" for s in meta["skipped"]]))
    b.append(("p", "All numbers, including every query's, are in `findings.json`."))
    return b


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
             "td.inconclusive{background:#ffd}td.unspecific{background:#fed}"
             "pre{background:#f4f4f4;padding:.5em;overflow-x:auto}figcaption{color:#666;font-size:.8em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>tpexplain findings</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _cls(cell) -> str:
    return {HOLDS: "holds", FAILS: "fails", UNMEASURED: "unmeasured", INCONCLUSIVE: "inconclusive",
            TOO_FEW: "inconclusive", NOT_SPECIFIC: "unspecific"}.get(cell, "")

