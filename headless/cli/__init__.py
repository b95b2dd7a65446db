"""``dinoseg``: the command-line twin of every GUI action.

Each sub-command lives in its own module in this package and exposes
``register(subparsers) -> None``, which adds an argparse parser whose ``func`` default takes the
parsed namespace and returns an exit code. Modules are discovered, so adding a command touches
no shared file. Heavy imports happen inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import NoReturn


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2, no traceback."""


class OneLineErrors(argparse.ArgumentParser):
    """argparse, whose command-line errors are one line like every other failure.

    argparse printed the whole usage (up to 12 lines for ``dinoseg segment``) before its error
    line; the usage stays one ``--help`` away, named in the line. Sub-command parsers inherit
    the class (``add_subparsers`` makes them with the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {line} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="dinoseg",
        description="DINO/DINOv2 features, boxes, SAM masks, scribble segmentation and training.",
    )
    from headless import __version__

    parser.add_argument("--version", action="version", version=f"dinoseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    for command_parser in sub.choices.values():  # who names an unknown option (main)
        command_parser.set_defaults(_parser=command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the sub-command they were given to, not by "dinoseg"
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        return _fail(args.command, str(exc))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # engine errors carry messages meant for users (ImageError, WeightsError, ...)
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        return _fail(args.command, str(msg))
    except KeyboardInterrupt:
        print(f"dinoseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        return _fail(args.command, "out of memory: use a smaller --size, fewer images at once, "
                                   "or a machine with more memory")
    except Exception as exc:  # noqa: BLE001 - anything else is still one line, not a traceback
        if os.environ.get("DINOSEG_TRACEBACK") == "1":
            raise
        first = (str(exc).splitlines() or [""])[0][:300]
        return _fail(args.command, f"{type(exc).__name__}: {first} "
                                   "(set DINOSEG_TRACEBACK=1 to see the traceback)")


def _fail(command: str, message: str) -> int:
    """Every CLI failure: one line on stderr naming the command, exit code 2."""
    line = " ".join(message.split()) or "failed"
    print(f"dinoseg {command}: error: {line}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
