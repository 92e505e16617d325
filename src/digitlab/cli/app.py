"""`digitlab ...`: the Typer app, its commands (train.py, use.py) and the entry point that turns
user errors into one line. Parses options and calls the Python API, nothing more.

Heavy modules (Keras) are imported inside the commands so `--help` and user errors are instant.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Annotated, Optional

import typer

from digitlab.cli import train, use
from digitlab.cli.options import EXTRAS, needs
from digitlab.errors import DigitlabError, Interrupted
from digitlab.files import DISK_ERRORS

# Typer >= 0.20 vendors click privately; its public BadParameter derives from the usage-error
# class in every version, so that is how we name it without a private import.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(
    name="digitlab",
    help="Train, compare, evaluate and use handwritten-digit classifiers on MNIST.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from digitlab.version import __version__

        typer.echo(f"digitlab {__version__}")
        raise typer.Exit()


@app.callback(context_settings={"help_option_names": ["-h", "--help"]})
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """Train, compare, evaluate and use handwritten-digit classifiers on MNIST."""


def _missing_extra(error: ModuleNotFoundError, argv: list[str]) -> str | None:
    """The one-line error for a module an extra would bring, or None for any other missing module."""
    module = (error.name or "").partition(".")[0]
    if module not in EXTRAS:
        return None
    return needs(module, next((a for a in argv if not a.startswith("-")), None))


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 2, never a traceback."""
    try:
        code = typer.main.get_command(app).main(args=argv, prog_name="digitlab", standalone_mode=False)
    except DigitlabError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except Interrupted as e:  # Ctrl-C in a run, which recorded it and says how to go on
        typer.echo(str(e), err=True)
        return 130
    except ModuleNotFoundError as e:
        message = _missing_extra(e, sys.argv[1:] if argv is None else argv)
        if message is None:  # not one of the extras' modules: a real bug, keep its traceback
            raise
        typer.echo(f"error: {message}", err=True)
        return 2
    except UsageError as e:
        if not e.format_message():  # bare `digitlab`: the help was shown, nothing went wrong
            return 0
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        typer.echo(f"error: {e.format_message()}{hint}", err=True)
        return 2
    except typer.Exit as e:
        if isinstance(e.__cause__, KeyboardInterrupt):  # Ctrl-C outside a run: nothing to resume
            typer.echo("interrupted", err=True)
        return e.exit_code
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        where = e.filename or "to the disk"  # some writers (TensorFlow's) do not say which file
        reason = os.strerror(e.errno)
        typer.echo(f"error: cannot write {where} ({reason}); free some space or choose another folder", err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


def run() -> None:
    """The `digitlab` command: main(), then, where it succeeded, an exit that skips the
    interpreter's last garbage collection, which walks every object TensorFlow made (about a
    second after a training) only to free memory the ending process gives back anyway. Not after
    a failure or Ctrl-C, where that collection may still close what the command left open (a
    stopped fit's TensorBoard writers); not in main(): a caller's process goes on."""
    code = main()
    if code == 0:
        gc.freeze()
    sys.exit(code)


# The commands, in the order `digitlab --help` lists them: making and judging models, then using them.
for command in (train.train, train.evaluate, train.runs, train.models, train.compare):
    app.command()(command)
app.command(name="ensemble")(train.ensemble_command)
for command in (train.tune, train.data, use.export, use.predict, use.read, use.serve, use.robustness):
    app.command()(command)
