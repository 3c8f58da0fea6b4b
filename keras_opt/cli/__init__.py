"""The ``keras-opt`` command line.

Each sub-command lives in its own private module under ``keras_opt.cli`` and exposes
``register(subparsers)``; `COMMANDS` lists those modules. The parser is
built without importing TensorFlow, so ``keras-opt --help`` is instant.

Example:
    >>> from keras_opt.cli import build_parser
    >>> build_parser().prog
    'keras-opt'
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from keras_opt import __version__

__all__ = ["main", "build_parser", "COMMANDS"]

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "keras_opt.cli._demo",
    "keras_opt.cli._convert",
    "keras_opt.cli._benchmark",
    "keras_opt.cli._optimize",
)


class CLIError(Exception):
    """A user error the CLI reports as one line (exit status 2)."""


def as_flags(message: str, flags: dict[str, str]) -> str:
    """Rewrite a library error so it names the command's flags, not Python arguments.

    Args:
        message: String. The library's message (``Argument `runs` must be ...``).
        flags: Dict Python argument name -> flag (``{"runs": "--runs"}``).

    Returns:
        The message with each argument name replaced by its flag.

    Example:
        >>> as_flags("Argument `runs` must be >= 1. Received: runs=0", {"runs": "--runs"})
        'Option `--runs` must be >= 1. Received: --runs 0'
    """
    import re

    for name, flag in flags.items():
        message = message.replace(f"Argument `{name}`", f"Option `{flag}`")
        message = message.replace(f"`{name}`", f"`{flag}`")
        message = re.sub(rf"\b{re.escape(name)}=", f"{flag} ", message)
    return message


def build_parser() -> argparse.ArgumentParser:
    """Build the ``keras-opt`` argument parser with every sub-command.

    Returns:
        ``argparse.ArgumentParser``.
    """
    parser = argparse.ArgumentParser(
        prog="keras-opt",
        description=(
            "From model.fit to a phone: LR schedules and finder, training monitors, "
            "TFMOT compression and measured TFLite export for Keras models."
        ),
    )
    parser.add_argument("--version", action="version", version=f"keras-opt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``keras-opt`` command.

    Args:
        argv: List of strings or None (``sys.argv[1:]``).

    Returns:
        Integer exit status: 0 on success, 2 on a user error.

    Example:
        >>> from keras_opt.cli import main
        >>> main(["--version"])  # doctest: +SKIP
        keras-opt 0.1.0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"keras-opt {args.command}: error: {err}", file=sys.stderr)
        return 2
