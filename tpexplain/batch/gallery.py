"""The batch gallery: one static index.html of every output in a manifest, grouped by person."""
from __future__ import annotations

import html
from pathlib import Path

INDEX = "index.html"


def gallery_html(rows: list[dict], title: str = "tpexplain batch") -> str:
    """A static page of every output in a manifest, grouped by person; failures listed first, then the
    images and annotations not explained; each person's OKS and PCK against its ground truth, when known."""
    e = html.escape
    not_explained = [r for r in rows if r.get("status") in ("not explained", "skipped")]   # "skipped": old manifests
    rows = [r for r in rows if r.get("status") not in ("not explained", "skipped")]
    people: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        people.setdefault((r["input"], r["person"]), []).append(r)
    failed = [r for r in rows if r.get("status") != "ok"]
    ok = sum(1 for r in rows if r.get("status") == "ok")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}"
             ".card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;margin:0 0 10px}"
             ".figs{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}"
             ".fig img{height:240px;max-width:100%;object-fit:contain;display:block}"
             ".cap{font-size:12px;color:#555;word-break:break-all}.bad{border-color:#c33}"
             ".err{color:#b00;font-size:12px}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
             "</style></head><body>",
             f"<h1>{e(title)}</h1><p>{_count(len(people), 'person', 'people')}, {_count(ok, 'figure')}, "
             f"{len(failed)} failed"
             + (f", {len(not_explained)} not explained" if not_explained else "") + "</p>"]
    if failed:
        parts.append("<h2>Failed</h2><table><tr><th>input</th><th>person</th><th>figure</th><th>error</th></tr>")
        parts += [f"<tr><td>{e(r['input'])}</td><td>{e(r['person'])}</td><td>{e(r['figure'])}</td>"
                  f"<td class='err'>{e(str(r.get('error')))}</td></tr>" for r in failed]
        parts.append("</table>")
    if not_explained:
        parts.append("<h2>Not explained</h2><table><tr><th>input</th><th>person</th><th>why</th></tr>")
        parts += [f"<tr><td>{e(r['input'])}</td><td>{e(r['person'])}</td><td>{e(str(r.get('reason')))}</td></tr>"
                  for r in not_explained]
        parts.append("</table>")
    parts.append("<h2>Figures</h2><p class='cap'>Click a figure for full size.</p><div>")
    for (inp, person), rs in people.items():
        bad = any(r.get("status") != "ok" for r in rs)
        parts.append(f"<div class='card{' bad' if bad else ''}'><div class='cap'><b>{e(Path(inp).name)}</b> · "
                     f"{e(person)}{' · box ' + e(', '.join(f'{v:g}' for v in rs[0]['bbox'])) if rs[0].get('bbox') else ''}"
                     f"{_accuracy(rs[0].get('accuracy'))}</div><div class='figs'>")
        for r in rs:
            src = e(r["output"])
            if r.get("status") == "ok":
                tag = (f"<a href='{src}'><img loading='lazy' src='{src}' alt='{e(r['figure'])}'></a>"
                       if not src.endswith(".pdf") else f"<a href='{src}'>{src}</a>")
                parts.append(f"<div class='fig'><div class='cap'>{e(r['figure'])}</div>{tag}</div>")
            else:
                parts.append(f"<div class='fig err'>{e(r['figure'])}: {e(str(r.get('error')))}</div>")
        parts.append("</div></div>")
    parts.append("</div></body></html>\n")
    return "".join(parts)


def _accuracy(acc: dict | None) -> str:
    """' · OKS 0.81 · PCK 0.93', with a warning when the prediction fits another annotated person better."""
    if not isinstance(acc, dict):
        return ""
    text = "".join(f" · {name} {acc[key]:.2f}" for key, name in (("oks", "OKS"), ("pck", "PCK"))
                   if isinstance(acc.get(key), (int, float)))
    if acc.get("closer_to") is not None:
        text += f" · <b class='err'>closer to annotation {html.escape(str(acc['closer_to']))}</b>"
    return text


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
