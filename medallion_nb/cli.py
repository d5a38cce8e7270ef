"""The ``medallion-nb`` command line: parse, call the library, print, exit code.

Exit codes: 0 success, 1 a run or check failed, 2 bad usage or configuration,
3 a data error that running again will not fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from medallion_nb import __version__
from medallion_nb.errors import MedallionError, NotebookRunError, ProjectError, QualityError, UsageError
from medallion_nb.reporting import KESTRA_ENV

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DATA = 0, 1, 2, 3


def _add_project_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", type=Path, default=Path("."), metavar="DIR",
                   help="project folder (default: the nearest folder with a medallion.yaml)")


def _cmd_sample_data(args: argparse.Namespace) -> int:
    import time

    from medallion_nb.sampledata import SampleSpec, generate

    spec = SampleSpec(orders=args.orders, days=args.days, customers=args.customers,
                      products=args.products, seed=args.seed)
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"sample-data: {text} ({time.monotonic() - started:.1f}s)", file=sys.stderr, flush=True)

    counts = generate(args.out, spec, progress=step)
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


def _cmd_kestra(args: argparse.Namespace) -> int:
    from medallion_nb.kestra import kestra_files
    from medallion_nb.project import load_project

    project = load_project(args.project)
    written = kestra_files(project, args.out, version=__version__)
    for path, text in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {_shown(path)}")
    compose = next(p for p in written if p.name == "docker-compose.yml")
    wheels = next((p for p in written if p.parent.name == "wheels"), None)
    if wheels is not None:
        print(f"before the first build: put medallion_nb's wheel in {_shown(wheels.parent)} (see {_shown(wheels)})")
    print(f"start Kestra: docker compose -f {_shown(compose)} up -d --build   (UI: http://localhost:8080)")
    return EXIT_OK


def _add_kestra(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kestra", help="generate the Kestra flow and a compose file to run Kestra locally",
                       description="Write <out>/flows/<namespace>.<project>.yml (one papermill task per layer, "
                                   "schedule, retries, executed notebooks as outputs), <out>/docker-compose.yml "
                                   "(Kestra + PostgreSQL with the project mounted at /project) and <out>/Dockerfile "
                                   "(Kestra plus papermill and medallion_nb, installed from a wheel you build into "
                                   "<out>/wheels, see <out>/wheels/README.md). Existing files are overwritten.")
    _add_project_option(p)
    p.add_argument("--out", type=Path, help="output folder (default: <project>/kestra)")
    p.set_defaults(func=_cmd_kestra)


def _cmd_init(args: argparse.Namespace) -> int:
    from medallion_nb.scaffold import init_project

    made = init_project(args.name, args.dir)
    print(f"created project {made.name} in {_shown(made.root)} ({len(made.files)} files)")
    print(f"next: cd {_shown(made.root)} && medallion-nb run")
    return EXIT_OK


def _add_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a new project from the template",
                       description="Create a working project: medallion.yaml, bronze/silver/gold notebooks with "
                                   "a worked example, tiny sample data, a README and the generated Kestra files. "
                                   "Never overwrites: fails if the folder exists and is not empty.")
    p.add_argument("name", help="project name: lowercase letters, digits, _ or -, starting with a letter")
    p.add_argument("--dir", type=Path, help="folder to create (default: ./NAME)")
    p.set_defaults(func=_cmd_init)


def _cmd_export(args: argparse.Namespace) -> int:
    from medallion_nb.export import export_tables

    print(export_tables(args.project, args.out, layer=args.layer))
    return EXIT_OK


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the gold tables as Parquet and CSV for BI tools",
                       description="Write every gold table as <out>/<table>.parquet and <out>/<table>.csv plus "
                                   "<out>/manifest.json (table, rows, version, run id, time, files). The folder is "
                                   "replaced as a whole once everything is written.")
    _add_project_option(p)
    p.add_argument("--out", type=Path,
                   help="export folder (default: export.dir in medallion.yaml, else <project>/exports)")
    p.add_argument("--layer", help="layer to export (default: gold, else the last layer)")
    p.set_defaults(func=_cmd_export)


def _parameter(text: str) -> tuple[str, object]:
    from medallion_nb.runner import parse_parameter

    try:
        return parse_parameter(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_id(text: str) -> str:
    from medallion_nb.runner import check_run_id

    try:
        return check_run_id(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    from medallion_nb.project import load_project
    from medallion_nb.runner import ConsoleProgress, run_pipeline

    _quiet_papermill()
    project = load_project(args.project)
    parameters = dict(args.param)
    if args.rebuild_source:
        for name in args.rebuild_source:
            project.source(name)  # an unknown name is a config error, named with the known ones
        parameters["rebuild_sources"] = ",".join(args.rebuild_source)
    observer = ConsoleProgress()
    if os.environ.get(KESTRA_ENV):  # under Kestra: the task's outputs and metrics, on stdout
        from medallion_nb.runner.progress import KestraOutputs, Observers

        observer = Observers(observer, KestraOutputs(project))
    run_pipeline(project, layers=args.layer, select=args.select, parameters=parameters, run_id=args.run_id,
                 observer=observer, force=args.force, wait=args.wait, resume=args.resume, attach=args.attach,
                 publish=not args.no_publish)
    return EXIT_OK


def _cmd_publish(args: argparse.Namespace) -> int:
    from medallion_nb.project import load_project
    from medallion_nb.runner.publish import publish_run

    manifest = publish_run(load_project(args.project), args.run_id)
    print(f"published run {manifest.run_id}: {len(manifest.tables)} table(s)")
    return EXIT_OK


def _add_publish(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="publish the table versions of a run whose notebooks all succeeded",
                       description="Publish, as one snapshot, the versions of the tables written by run RUN_ID "
                                   "(<lake>/_medallion/published.json). `medallion-nb run` publishes by itself; "
                                   "this is the last step of a scheduler that runs one task per layer with "
                                   "`run --attach --no-publish`. Refused (exit 1) when a notebook of the run did "
                                   "not succeed.")
    _add_project_option(p)
    p.add_argument("--run-id", type=_run_id, required=True, metavar="ID", help="the run to publish")
    p.set_defaults(func=_cmd_publish)


def _quiet_papermill() -> None:
    import logging

    # papermill's log lines name no notebook and would cut into the progress lines;
    # every failure they could report reaches the run record and the error message.
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    # nbformat validates notebooks with jsonschema, whose format checkers import
    # rfc3987_syntax when it is installed (JupyterLab brings it): that import builds
    # dozens of Earley parsers for the "iri" format, 1-2 s of CPU, and no notebook
    # schema uses that format. This process only runs notebooks, so it goes without.
    sys.modules.setdefault("rfc3987_syntax", None)


def _wait(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--wait {text!r}: expected seconds, e.g. 600 (or 'forever')") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"--wait {text!r}: expected seconds >= 0")
    return seconds


def _wait_or_forever(text: str) -> float | None:
    return None if text == "forever" else _wait(text)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    _add_project_option(p)
    p.add_argument("--layer", action="append", metavar="LAYER",
                   help="run only this layer's notebooks; repeat for several")
    p.add_argument("--select", action="append", metavar="SELECTOR",
                   help="run a slice of the lineage: TABLE (the notebook writing it), TABLE+ (and everything "
                        "downstream), +TABLE (and everything upstream); a notebook path or layer name works too; "
                        "repeatable")
    p.add_argument("-p", "--param", action="append", type=_parameter, default=[], metavar="NAME=VALUE",
                   help="notebook parameter (repeatable); true/false become booleans, 42 an integer, "
                        "2.5 a float, anything else a string")
    p.add_argument("--force", action="store_true",
                   help="run every selected notebook, even those whose inputs did not change")
    p.add_argument("--wait", type=_wait_or_forever, default=0, metavar="SECONDS",
                   help="if another run holds the lake's writer lock, wait this long for it "
                        "(default: refuse at once, naming the holder; 'forever' waits as long as it takes)")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the layer notebooks with papermill, following their lineage",
                       description="Execute the notebooks (all, those of --layer, or a --select slice) with "
                                   "papermill and injected parameters (project_dir, run_id, run_date, full_refresh, "
                                   "the project's parameters and -p values). A notebook starts as soon as the "
                                   "tables it reads are written, so independent notebooks run side by side; one "
                                   "whose inputs, code and parameters did not change since its last successful run "
                                   "is skipped as up to date (unless --force or full_refresh). Executed notebooks "
                                   "go to <runs>/<run_id>/<layer>/, the run record to <runs>/<run_id>/run.json. "
                                   "A failing notebook skips what depends on it; the exit code is 1, or 3 when "
                                   "every failure is a data or config error that running again will not fix.")
    _add_run_options(p)
    p.add_argument("--run-id", type=_run_id, metavar="ID",
                   help="the run's id and folder name (default: UTC time plus a random suffix)")
    p.add_argument("--resume", metavar="RUN_ID", type=_run_id,
                   help="continue run RUN_ID: run again, into its folder and with its parameters, the notebooks "
                        "that did not succeed")
    p.add_argument("--rebuild-source", action="append", metavar="NAME", default=[],
                   help="reload this source from all its current files (rows of vanished or changed files "
                        "disappear); repeatable; passed to the notebooks as rebuild_sources")
    p.add_argument("--attach", action="store_true",
                   help="with --run-id: add to that run's record if it exists (a scheduler running one task per "
                        "layer); a notebook that failed there with a data error is not run again (exit 3)")
    p.add_argument("--no-publish", action="store_true",
                   help="do not publish the run's table versions at the end (`medallion-nb publish` does it later)")
    p.set_defaults(func=_cmd_run)


def _cmd_backfill(args: argparse.Namespace) -> int:
    from medallion_nb.project import load_project
    from medallion_nb.runner import ConsoleProgress
    from medallion_nb.runner.backfill import backfill

    _quiet_papermill()
    project = load_project(args.project)
    done = backfill(project, args.start, args.end, layers=args.layer, select=args.select,
                    parameters=dict(args.param), force=args.force, wait=args.wait, observer_factory=ConsoleProgress)
    for day, what in done:
        print(f"{day} {what}")
    return EXIT_OK


def _date(text: str) -> object:
    from medallion_nb.validation import parse_date

    try:
        return parse_date(text, "day")
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_backfill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="run the pipeline once per day of a date range, in order",
                       description="Run the pipeline for each day from --start to --end (both included), oldest "
                                   "first, with run_date set to that day and run id backfill-<day>. A day whose "
                                   "run already succeeded is not run again, and notebooks whose inputs did not "
                                   "change are up to date, so repeating a backfill changes nothing. Stops at the "
                                   "first day that fails.")
    p.add_argument("--start", type=_date, required=True, metavar="DAY", help="first day (YYYY-MM-DD)")
    p.add_argument("--end", type=_date, required=True, metavar="DAY", help="last day (YYYY-MM-DD), included")
    _add_run_options(p)
    p.set_defaults(func=_cmd_backfill)


def _cmd_dag(args: argparse.Namespace) -> int:
    from medallion_nb.lakehouse import read_stats
    from medallion_nb.project import load_project
    from medallion_nb.runner import build_plan

    project = load_project(args.project)
    plan = build_plan(project, args.layer, args.select, stats=read_stats(project))
    if args.out is None:
        print(plan.describe())
        return EXIT_OK
    fmt = args.out.suffix.lstrip(".").lower()
    data = plan.dot().encode() if fmt == "dot" else plan.image(fmt)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {_shown(args.out)}")
    return EXIT_OK


def _add_dag(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dag", help="show the lineage the runner follows: sources, notebooks and tables",
                       description="Print, per layer, each notebook with the tables it reads and writes (with "
                                   "their row count and last run) and what it waits for; or with --out draw the "
                                   "graph: .dot needs nothing, .png, .svg and .pdf need the graphviz Python package "
                                   "(pip install 'medallion_nb[graph]') and Graphviz's `dot` program.")
    _add_project_option(p)
    p.add_argument("--layer", action="append", metavar="LAYER", help="plan only this layer; repeat for several")
    p.add_argument("--select", action="append", metavar="SELECTOR", help="plan a slice, as for run --select")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the graph to FILE (.dot, .png, .svg or .pdf)")
    p.set_defaults(func=_cmd_dag)


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


# Each command registers itself here: a function that adds its sub-parser.
def _cmd_vacuum(args: argparse.Namespace) -> int:
    from medallion_nb.lakehouse import connect

    with connect(args.project) as lake:
        removed = lake.vacuum(args.table, retain_hours=args.retain_hours, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for table, files in removed.items():
        print(f"{table}: {verb} {len(files)} file(s)")
    print(f"{verb} {sum(len(f) for f in removed.values())} file(s) no version newer than "
          f"{args.retain_hours} h needs")
    return EXIT_OK


def _add_vacuum(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vacuum", help="delete data files no recent table version needs",
                       description="Every replace keeps the previous version's files so that earlier versions "
                                   "stay readable (lake.table(name, version=...)), and a write that died before "
                                   "its commit leaves files no version references. vacuum deletes, among files "
                                   "older than --retain-hours, those no version newer than that needs, never "
                                   "those of a published snapshot; the current tables are unchanged.")
    _add_project_option(p)
    p.add_argument("--table", metavar="LAYER.TABLE", help="only this table (default: every table)")
    p.add_argument("--retain-hours", type=int, default=168,
                   help="keep what versions of the last N hours need (default: 168, one week)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    p.set_defaults(func=_cmd_vacuum)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    import os
    import subprocess

    from medallion_nb.project import load_project
    from medallion_nb.widgets.serve import dashboard_server

    server = dashboard_server(load_project(args.project), port=args.port, token=args.token, notebook=args.notebook)
    print(f"dashboard of {server.notebook.name} on {server.url}   (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.run(server.argv, cwd=server.cwd, env={**os.environ, **server.env}, check=False).returncode
    except FileNotFoundError as exc:
        print(f"error: cannot start Voila ({exc}); install it: pip install 'medallion_nb[dashboard]'",
              file=sys.stderr)
        return EXIT_USAGE


def _add_dashboard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="serve the gold tables as a web page for people who do not write code",
                       description="Start Voila on 127.0.0.1 with a token: the project's name and description, the "
                                   "gold tables of the last published run with their freshness, ready-made charts "
                                   "and the explorer; no code. Uses notebooks/dashboard.ipynb when the project has "
                                   "one, else a built-in page. Downloads go to the browser; nothing is written.")
    _add_project_option(p)
    p.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default: 8866)")
    p.add_argument("--token", help="access token (default: a new random one, printed in the address)")
    p.add_argument("--notebook", type=Path, help="dashboard notebook to serve (default: see above)")
    p.set_defaults(func=_cmd_dashboard)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_sample_data,
    _add_kestra,
    _add_init,
    _add_export,
    _add_run,
    _add_backfill,
    _add_publish,
    _add_dag,
    _add_vacuum,
    _add_dashboard,
]


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
    except (ProjectError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (NotebookRunError, QualityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED if exc.retryable else EXIT_DATA
    except MedallionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # not an error we raise on purpose: a bug, said as one
        print(f"error: {_bug_report(exc, args.command)}", file=sys.stderr)
        return EXIT_FAILED


def _bug_report(exc: BaseException, command: str) -> str:
    """A few lines about an unexpected exception: what, where in medallion_nb, and where to report it.

    The whole traceback goes to a file in the temporary folder, named in the message.
    """
    import tempfile
    import time
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "medallion_nb" in Path(f.filename).parts] or frames
    where = f" (at {_package_path(ours[-1].filename)}:{ours[-1].lineno}, in {ours[-1].name})" if ours else ""
    text = "".join(traceback.format_exception(exc))
    header = f"medallion-nb {__version__}, command {command!r}, {time.strftime('%Y-%m-%d %H:%M:%S %z')}\n\n"
    try:
        with tempfile.NamedTemporaryFile("w", prefix="medallion-nb-bug-", suffix=".txt", delete=False,
                                         encoding="utf-8") as fh:
            fh.write(header + text)
        saved = f"the traceback is in {fh.name}"
    except OSError:
        saved = "the traceback could not be saved"
    summary = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return (f"internal error in medallion_nb {__version__}: {summary}{where}\n"
            f"  this is a bug in medallion_nb, not in your project; {saved} - please report it, "
            f"with that file, to {_report_to()}")


def _package_path(filename: str) -> str:
    parts = Path(filename).parts
    return "/".join(parts[len(parts) - parts[::-1].index("medallion_nb") - 1:]) if "medallion_nb" in parts \
        else filename


def _report_to() -> str:
    """The issue tracker named in the package's metadata, else its developers."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("medallion_nb").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("issues", "bug tracker", "bugs", "tracker"):
            return url.strip()
    return "the medallion_nb developers"


if __name__ == "__main__":
    sys.exit(main())
