"""tpexplain.progress: counts and failures right, periodic log lines when stderr is not a terminal."""
import logging

import pytest

from tpexplain.progress import Progress, progress, track


@pytest.fixture
def info_log(caplog):
    caplog.set_level(logging.INFO, logger="tpexplain")
    return caplog


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tpexplain"]


def test_not_a_terminal_logs_one_line_at_the_end_with_rate_eta_and_failures(info_log):
    with progress(4, desc="batch", unit="persons") as bar:    # pytest's stderr is not a terminal
        bar.update()
        bar.update(failed=1)
        bar.update(2)
    assert (bar.done, bar.failed) == (4, 1)
    lines = _lines(info_log)
    # the updates came within log_every (10 s) of the start: only the final line is written
    assert len(lines) == 1, lines
    assert lines[0].startswith("batch: 4/4 persons, ") and "persons/s" in lines[0]
    assert "ETA 0 s" in lines[0] and lines[0].endswith(", 1 failed")


def test_a_line_at_most_every_log_every_seconds(info_log):
    bar = Progress(3, desc="eval", unit="images", log_every=0.0)
    for _ in range(3):
        bar.update()
    assert [line.split(",")[0] for line in _lines(info_log)] == ["eval: 1/3 images", "eval: 2/3 images",
                                                                  "eval: 3/3 images"]
    assert not any("failed" in line for line in _lines(info_log))


def test_disabled_or_quiet_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="tpexplain")
    with progress(2, desc="batch", unit="persons", enabled=False) as bar:
        bar.update(2, failed=2)
    assert bar.failed == 2 and not _lines(caplog)
    caplog.set_level(logging.WARNING, logger="tpexplain")    # what the CLI's -q does
    with progress(2, desc="batch", unit="persons") as bar:
        bar.update(2)
    assert not _lines(caplog)


def test_track_yields_every_item_and_counts_them(info_log):
    assert list(track(range(5), "items", "it")) == [0, 1, 2, 3, 4]
    assert _lines(info_log)[-1].startswith("items: 5/5 it")
