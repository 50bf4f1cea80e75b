"""What every command shares: the `--data-dir` option, settings, output and error handling."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from pydantic import ValidationError

from maillage.config import Settings
from maillage.errors import MaillageError
from maillage.logs import setup_logging

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (default $MAILLAGE_DATA_DIR, else ./.maillage)."),
]

F = TypeVar("F", bound=Callable[..., Any])


def settings_for(data_dir: Path | None, component: str | None = None) -> Settings:
    """Settings from the environment, with `--data-dir` applied, and logging configured."""
    settings = Settings().with_data_dir(data_dir)
    setup_logging(settings.log_level, json=settings.log_json, component=component)
    return settings


def print_json(doc: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def fail(message: str, code: int = 1) -> None:
    """A clear message on stderr and a non-zero exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def clean_errors(func: F) -> F:
    """Turn maillage's own errors and bad input into a message and exit code 1, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MaillageError as exc:
            fail(str(exc))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            fail(problems)

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps func's signature
