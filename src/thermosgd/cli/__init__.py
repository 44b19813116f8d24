"""Command-line interface: argument parsing and error-to-exit-code mapping only.

Every subcommand is one module of this package exposing ``register(subparsers)``,
which adds its parser and sets ``func`` (a callable taking the parsed
``argparse.Namespace`` and returning an exit code or None). Those modules import
torch, xarray and matplotlib only inside ``func``, so ``--help`` and
``reproduce --list`` answer at once. Any :class:`thermosgd.errors.UsageError`
(and argparse's own errors) ends the program with one line on stderr and exit
code 2.
"""

from __future__ import annotations

import argparse
import gc
import sys

from thermosgd.cli import collapse, experiments, report, reproduce, study, sweep, walk
from thermosgd.cli.common import Parser, flag
from thermosgd.errors import UsageError
from thermosgd.threads import passive_waits


def build_parser() -> argparse.ArgumentParser:
    """The ``thermosgd`` parser with every subcommand."""
    parser = Parser(
        prog="thermosgd",
        description="Thermophoresis of SGD (Wei & Schwab): simulate, measure, fit, reproduce.",
    )
    from thermosgd import __version__

    parser.add_argument("--version", action="version", version=f"thermosgd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in (reproduce, report, sweep, study, walk, collapse, experiments):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        code = args.func(args)
    except UsageError as exc:
        print(f"error: {exc}" + (f" ({flag(exc.param)})" if exc.param else ""), file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # unwritable figure path, full disk, ...: the environment, not a bug
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; reduce the problem size (particles, seeds, probe size, ...)", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if "allocate" not in str(exc):
            raise
        print("error: out of memory (" + str(exc).splitlines()[0][:200] + "); reduce the problem size", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work units are kept, re-run the same command to resume", file=sys.stderr)
        return 130
    return int(code or 0)


def entry() -> None:
    """The ``thermosgd`` console script and ``python -m thermosgd``: :func:`main`, then exit with its code."""
    passive_waits()  # before torch loads: idle OpenMP threads sleep instead of spinning on shared cores
    code = main()
    # At exit Python runs a last garbage collection over every object torch, scipy and
    # matplotlib created: 0.4–1.4 s measured, a tenth of a short reproduce. A finished command
    # has closed its files and joined its workers, so those objects are left to the OS.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
