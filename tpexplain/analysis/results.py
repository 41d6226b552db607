"""What every analysis result offers: `figure()`, and its numbers as JSON and CSV text, written atomically.

A result (`LayerStudy`, `OcclusionStudy`, `SensitivityMap`) provides `figure()`, `summary()` (a JSON-ready
dict) and `csv_rows()` (a header and rows); `to_json(path=None)` and `to_csv(path=None)` always return the
text, and also write it (atomically, by the output policy of tpexplain.io.check_output) when given a path.
The JSON's first key is "generator": "tpexplain" (how a file tpexplain wrote is recognised); the CSV is
recognised by its header (tpexplain.io.CSV_HEADERS). Both say whose numbers they are (`about`: image, person,
box, model, weights, and OKS/PCK when the ground truth is known): top-level JSON keys, and the last columns of
every CSV row.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .. import figures
from ..io import GENERATOR, atomic_path, check_output, write_text_atomic


ABOUT = ("image", "person", "box", "model", "weights", "oks", "pck")   # the CSV's added last columns


class Result(figures.Displayable):
    """Base of the analysis results: one meaning of `to_json` and `to_csv` everywhere."""

    def about(self) -> dict:
        """Whose numbers these are, from the explanation's meta (set by the CLI and batch): image, person, box,
        model, weights ("random", a checkpoint's file name, None for the zoo's own); with the ground truth
        also the annotation, OKS, PCK and the labelled keypoints counted."""
        ex = next((getattr(self, a) for a in ("explanation", "before") if getattr(self, a, None) is not None), None)
        meta = {} if ex is None else ex.meta
        out = {"image": meta.get("image"), "person": meta.get("person"), "box": meta.get("box"),
               "model": meta.get("model") or (None if ex is None else ex.model_name), "weights": meta.get("weights")}
        acc = meta.get("accuracy")
        if acc:
            out.update({k: acc.get(k) for k in ("annotation", "oks", "pck", "labelled")})
        return out

    def summary(self) -> dict:
        raise NotImplementedError

    def csv_rows(self) -> tuple[list[str], list[list]]:
        raise NotImplementedError

    def to_json(self, path: str | Path | None = None, force: bool = False) -> str:
        """The summary as JSON text (indent 1), also written atomically to `path` (.json) if given; an
        existing file is replaced only if tpexplain wrote it, or with `force`."""
        text = json.dumps({"generator": GENERATOR, **self.about(), **self.summary()}, indent=1)
        if path is not None:
            write_text_atomic(check_output(path, kind="json", force=force), text)
        return text

    def to_csv(self, path: str | Path | None = None, force: bool = False) -> str:
        """The rows as CSV text (the csv module's dialect: comma, \\r\\n), also written atomically to `path`
        (.csv) if given; an existing file is replaced only if tpexplain wrote it, or with `force`."""
        header, rows = self.csv_rows()
        about = self.about()
        box = "" if about["box"] is None else ",".join(f"{float(v):.0f}" for v in about["box"])
        extra = ["" if about.get(k) is None else box if k == "box" else
                 f"{about[k]:.6g}" if isinstance(about[k], float) else about[k] for k in ABOUT]
        buf = io.StringIO(newline="")
        writer = csv.writer(buf)
        writer.writerow([*header, *ABOUT])
        writer.writerows([*row, *extra] for row in rows)
        text = buf.getvalue()
        if path is not None:
            with atomic_path(check_output(path, kind="csv", force=force)) as tmp:
                tmp.write_bytes(text.encode("utf-8"))   # bytes: the \r\n must not be translated
        return text
