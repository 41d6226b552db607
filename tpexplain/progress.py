"""One way to report progress and messages: tqdm bars on a terminal, periodic log lines otherwise.

Messages go through the standard `logging` module under the "tpexplain" logger; the CLI's -v/-q set its
level. Long loops use `progress(...)`, which draws a tqdm bar when stderr is a terminal and, when it is
not (a log file, a CI job), writes a plain line at most every `log_every` seconds and at the end.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

log = logging.getLogger("tpexplain")
T = TypeVar("T")


class Progress:
    """Counts finished units (and failures); `with progress(total=N, desc=...) as bar: bar.update()`."""

    def __init__(self, total: int | None, desc: str, unit: str = "it", enabled: bool = True,
                 log_every: float = 10.0):
        self.total, self.desc, self.unit = total, desc, unit
        self.done = self.failed = 0
        # quiet only when told so (the CLI's -q sets the level); a library user with no logging set up still
        # gets a bar on a terminal or in a notebook
        self.enabled = enabled and not (log.level != logging.NOTSET and log.level > logging.INFO)
        self.log_every = log_every
        self._start = self._last = time.monotonic()
        self._bar = None
        if self.enabled and (sys.stderr.isatty() or _in_notebook()):
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1, failed: int = 0) -> None:
        """`n` more units done, `failed` of them failed."""
        self.done += n
        self.failed += failed
        if self._bar is not None:
            self._bar.update(n)
            if self.failed:
                self._bar.set_postfix(failed=self.failed, refresh=False)
        elif self.enabled:
            now = time.monotonic()
            if now - self._last >= self.log_every or (self.total is not None and self.done >= self.total):
                self._last = now
                log.info(self.line())

    def line(self) -> str:
        """'desc: 12/40 persons, 0.8 persons/s, ETA 35 s, 1 failed'."""
        elapsed = time.monotonic() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        total = f"/{self.total}" if self.total is not None else ""
        text = f"{self.desc}: {self.done}{total} {self.unit}"
        # no rate while every unit failed: failures that end at once (a missing file) give absurd rates
        if self.done > self.failed:
            text += f", {rate:.2f} {self.unit}/s"
            if self.total is not None and rate > 0:
                text += f", ETA {(self.total - self.done) / rate:.0f} s"
        return text + (f", {self.failed} failed" if self.failed else "")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def one_line(exc: BaseException) -> str:
    """An exception as one line for a message: its first line, or its type when it has no message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _in_notebook() -> bool:
    """Running in a Jupyter kernel (where tqdm draws a widget), not merely with ipykernel imported."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def progress(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True) -> Progress:
    """A progress reporter for `total` units (None: unknown)."""
    return Progress(total, desc, unit, enabled)


def track(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None,
          enabled: bool = True) -> Iterator[T]:
    """Iterate over `items`, reporting progress."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(total, desc, unit, enabled) as bar:
        for item in items:
            yield item
            bar.update()
