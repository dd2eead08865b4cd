"""The typer application and what every command shares: the config option, JSON output, the
consoles, and the mapping of errors to a message (a JSON object under ``--json``) and an exit code.

Exit codes (docs/cli.md lists them): 0 success, 1 an error driftloop reports (a
:class:`DriftloopError`: bad config, not found, a missing extra, ...), 2 a usage error (an unknown
option or a bad value), 3 the demo ended without closing the loop, 4 the port to listen on is in
use.

Importing this module stays light (typer and rich only): each command imports what it uses
inside its body, so ``driftloop --help`` does not import the server, pandas or scikit-learn.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import UsageError  # typer vendors click; no public alias
from typer.core import TyperGroup

from driftloop._version import __version__
from driftloop.errors import DriftloopError
from driftloop.logs import SecretRedactor, config_secrets

if TYPE_CHECKING:
    from driftloop.config import Config

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_LOOP_NOT_CLOSED = 3
EXIT_PORT_IN_USE = 4

SERVER_MODULES = frozenset(
    {
        "fastapi",
        "starlette",
        "uvicorn",
        "prometheus_client",
        "sklearn",
        "scipy",
        "pandas",
        "fsspec",
        "slack_sdk",
        "matplotlib",
    }
)
"""Modules of the ``server`` extra: a command that needs one says how to install it."""


_redactor = SecretRedactor(api_keys=False)
"""What every output of the CLI passes through: the secret values of the config the command
loaded (:func:`load`: URL passwords, webhook URLs, tokens, signing secrets) and any URL's
password become ``***``. API keys stay: ``driftloop keys create`` prints the new one."""


class RedactedStream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` as it is at each write (a test runner replaces them),
    with :data:`_redactor` applied to what is written."""

    def __init__(self, *, stderr: bool) -> None:
        super().__init__()
        self.stderr = stderr

    @property
    def stream(self) -> TextIO:
        return sys.stderr if self.stderr else sys.stdout

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        self.stream.write(_redactor.redact(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def _console(*, stderr: bool) -> Console:
    """A console that does not hard-wrap when its stream is not a terminal (a pipe, a file):
    lines stay whole and tables take the width they need."""
    stream = cast(TextIO, RedactedStream(stderr=stderr))  # a TextIOBase is a text stream
    if stream.isatty():
        return Console(file=stream)
    return Console(file=stream, soft_wrap=True, width=1000)


console = _console(stderr=False)
err_console = _console(stderr=True)

_json_output = False


def _remember_json(value: bool) -> bool:
    global _json_output
    _json_output = _json_output or value
    return value


def report_error(kind: str, message: str, exit_code: int) -> typer.Exit:
    """Print an error (a JSON object on stdout under ``--json``, else a line on stderr) and
    return the :class:`typer.Exit` to raise."""
    message = _redactor.redact(message)
    if _json_output:
        sys.stdout.write(
            json.dumps({"error": {"type": kind, "message": message, "exit_code": exit_code}}) + "\n"
        )
        sys.stdout.flush()
    else:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(exit_code)


class DriftloopGroup(TyperGroup):
    """Turns a :class:`DriftloopError`, a usage error or a missing server module from any command
    into a clean message (JSON under ``--json``) and its exit code."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        global _json_output, _redactor
        _json_output = "--json" in args
        _redactor = SecretRedactor(api_keys=False)  # a new command: no config loaded yet
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except DriftloopError as exc:
            raise report_error(type(exc).__name__, exc.message, EXIT_ERROR) from None
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in SERVER_MODULES:
                raise
            raise report_error(
                "MissingExtraError",
                f"this command needs the server extra ({exc.name} is not installed): "
                "pip install 'driftloop[server]'",
                EXIT_ERROR,
            ) from None
        except UsageError as exc:
            if not _json_output:
                raise
            raise report_error("UsageError", exc.format_message(), EXIT_USAGE) from None


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"driftloop {__version__}\n")
        raise typer.Exit()


app = typer.Typer(
    cls=DriftloopGroup,
    help="driftloop keeps a deployed model from drifting: "
    "serve → report insights → monitor → notify → retrain → gate → deploy → verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the driftloop version and exit.",
    ),
) -> None:
    """driftloop keeps a deployed model from drifting: serve → report insights → monitor →
    notify → retrain → gate → deploy → verify."""
    del version


ConfigOption = typer.Option(
    None, "--config", "-c", help="Path to driftloop.yaml (default: found from the current dir)."
)
LogLevelOption = typer.Option(
    None,
    "--log-level",
    help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default: logging.level, INFO).",
)
LogFormatOption = typer.Option(
    None, "--log-format", help="text or json, one line each (default: logging.format, text)."
)
JsonOption = typer.Option(
    False,
    "--json",
    callback=_remember_json,
    help="Print machine-readable JSON (errors too: see docs/cli.md).",
)


def sub_app(name: str, help: str) -> typer.Typer:
    """A command group (``driftloop models ...``) registered on the main app."""
    group = typer.Typer(help=help, no_args_is_help=True, add_completion=False)
    app.add_typer(group, name=name, help=help)
    return group


def load_for_service(
    config_path: Path | None, log_level: str | None, log_format: str | None
) -> Config:
    """The config of a long-running command, with driftloop's logging set up from it."""
    from driftloop.logs import configure_from

    config = load(config_path)
    level, chosen_format = configure_from(config, log_level, log_format)
    # the options travel with the config: `serve --workers N` hands it to its worker processes
    return config.model_copy(
        update={
            "logging": config.logging.model_copy(update={"level": level, "format": chosen_format})
        }
    )


def load(config_path: Path | None) -> Config:
    """The config, whose secrets the command's output will not show from now on."""
    global _redactor
    from driftloop.config import load_config

    config = load_config(config_path)
    _redactor = SecretRedactor(config_secrets(config), api_keys=False)
    return config


def _redacted(data: Any) -> Any:
    if isinstance(data, str):
        return _redactor.redact(data)
    if isinstance(data, dict):
        return {key: _redacted(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_redacted(value) for value in data]
    return data


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else, so it pipes into ``jq``; secrets masked (in the values,
    before encoding, so that the JSON stays valid)."""
    sys.stdout.write(json.dumps(_redacted(data), indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
