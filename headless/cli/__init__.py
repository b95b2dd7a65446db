"""``dinoseg``: the command-line twin of every GUI action.

Each sub-command lives in its own module in this package and exposes
``register(subparsers) -> None``, which adds an argparse parser whose ``func`` default takes the
parsed namespace and returns an exit code. Modules are discovered, so adding a command touches
no shared file. Heavy imports happen inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"dinoseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # engine errors carry messages meant for users (ImageError, WeightsError, ...)
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"dinoseg {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
