"""The ``medallion-nb`` command line: parse, call the library, print, exit code.

Exit codes: 0 success, 1 a run or check failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from medallion_nb import __version__
from medallion_nb.errors import MedallionError, NotebookRunError, ProjectError, QualityError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from medallion_nb.sampledata import SampleSpec, generate

    spec = SampleSpec(orders=args.orders, days=args.days, customers=args.customers,
                      products=args.products, seed=args.seed)
    counts = generate(args.out, spec)
    print(f"wrote sample data to {args.out}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    return EXIT_OK


def _add_sample_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample-data", help="write the demo's raw e-commerce data at any volume",
                       description="Write deterministic, deliberately dirty raw data (products, customers, "
                                   "one orders CSV per day). The same arguments always give the same files.")
    p.add_argument("--orders", type=int, default=4_000, help="number of orders (default: 4000, the demo set)")
    p.add_argument("--days", type=int, default=35, help="days of order files (default: 35)")
    p.add_argument("--customers", type=int, help="number of customers (default: orders/100, 200..100000)")
    p.add_argument("--products", type=int, help="number of products (default: orders/2000, 40..5000)")
    p.add_argument("--seed", type=int, default=7, help="variation of the data (default: 7)")
    p.add_argument("--out", type=Path, default=Path("data/raw"), help="output folder (default: data/raw)")
    p.set_defaults(func=_cmd_sample_data)


# Each command registers itself here: a function that adds its sub-parser.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_sample_data]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medallion-nb",
        description="Run bronze -> silver -> gold notebook pipelines on DuckDB and Delta Lake.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ProjectError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (NotebookRunError, QualityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except MedallionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
