"""The ``tingbao`` command. Subcommands are plug-ins registered under the entry-point group
``tingbao.commands`` (see pyproject.toml): each is a ``register(subparsers)`` function. So an
edge device that installs only ``tingbao[edge]`` gets the edge subcommands and never imports
collector or analysis code (DESIGN.md: dependencies point one way)."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from ..sources.chunk import SourceError


class CliError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tingbao",
        description="听保 tingbao — noise-hazard and hearing-protection monitoring.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group="tingbao.commands"), key=lambda e: e.name):
        try:
            register = ep.load()
        except (ImportError, AttributeError) as e:  # not installed here, or not yet built
            sub.add_parser(ep.name, help=f"(unavailable here: {e})")
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CliError, SourceError, ValueError, OSError) as e:  # CalibrationError is a ValueError
        print(f"tingbao {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
