"""The `tpexplain` command group: logging, exit codes, and the commands it is made of.

Exit status: 0 success; 1 a well-formed command could not be carried out (a missing image, an unknown
model or keypoint, ...); 2 the command line is malformed (an unknown option, a missing argument, a value
that does not parse, options that exclude each other); 130 interrupted (Ctrl-C); 141 stdout was closed
early (`tpexplain models | head -1`). Errors are one line "Error: ..." on stderr, never a traceback unless
TPEXPLAIN_DEBUG=1; a closed stdout ends the command silently.
"""
from __future__ import annotations

import logging
import os
import sys

import click

from .. import __version__
from .analyses import findings, layers, occlusion
from .batch import batch
from .explain import attention, explore, kp_attention
from .training import evaluate, synth, train
from .zoo import download, models

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 1, 2, 130, 141
# click >= 8.2 reports a bare `tpexplain` as this usage error carrying the help; older click exits 0 instead
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _error(message: str) -> None:
    lines = str(message).strip().splitlines()
    click.echo(f"Error: {lines[0] if lines else 'failed'}", err=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush of a closed pipe raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture stdout)
        pass


class Group(click.Group):
    """Turns every failure into one line on stderr and the exit status in the module docstring."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # caught here: click's own handler would exit with status 1, as if the command had failed
            _silence_stdout()
            raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        logger = logging.getLogger("tpexplain")
        saved = logger.level, list(logger.handlers)   # restored at the end, for callers in the same process
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = code if isinstance(code, int) else 0  # an int is an Exit's status; commands return None
        except _NO_ARGS_IS_HELP as exc:     # bare `tpexplain`: the help, as a usage error
            exc.show()
            code = EXIT_USAGE
        except click.UsageError as exc:     # unknown option or command, missing argument, bad value
            _error(exc.format_message())
            code = EXIT_USAGE
        except click.ClickException as exc:
            _error(exc.format_message())
            code = exc.exit_code
        except (click.Abort, KeyboardInterrupt):   # click turns Ctrl-C into Abort
            _error("interrupted")
            code = EXIT_INTERRUPTED
        except Exception as exc:  # the CLI boundary: never show a traceback to a user
            if os.environ.get("TPEXPLAIN_DEBUG"):
                raise
            _error(str(exc) or type(exc).__name__)
            code = EXIT_FAILURE
        finally:
            logger.setLevel(saved[0])
            logger.handlers[:] = saved[1]
        sys.exit(code)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (click's test runner swaps it per call)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(_Formatter())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


class _Formatter(logging.Formatter):
    """Messages alone; warnings and errors prefixed with their level ('warning: ...')."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


def setup_logging(level: int) -> None:
    """Send the "tpexplain" logger to stderr at `level` (one handler, however often this is called)."""
    logger = logging.getLogger("tpexplain")
    logger.setLevel(level)
    for h in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(h)
    logger.addHandler(_StderrHandler())


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tpexplain", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Also print debugging messages.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors: no progress or information.")
def main(verbose: bool, quiet: bool) -> None:
    """See why a transformer pose estimator put a keypoint where it did."""
    if verbose and quiet:
        raise click.UsageError("use -v/--verbose or -q/--quiet, not both")
    setup_logging(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    # the CLI only writes files: never open a window. The environment variable reaches matplotlib when it is
    # first imported (not yet, for speed) and batch's worker processes.
    os.environ["MPLBACKEND"] = "Agg"
    if "matplotlib" in sys.modules:
        import matplotlib
        matplotlib.use("Agg")


for _command in (attention, kp_attention, explore, layers, occlusion, findings, batch, models, download, synth,
                 train, evaluate):
    main.add_command(_command)
