"""Command line: ``python -m helpers server|data|audit|reset|bench|workshop|build|lab ...`` (see ``--help``)."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from helpers.core import server, settings
from helpers.core.errors import WorkbookError


def _server(args: argparse.Namespace) -> int:
    if os.environ.get("DATABASE_URL") and args.action in ("start", "stop"):
        print("DATABASE_URL is set, so the workbook uses that server; the embedded one is only for when it is unset.")
    if args.action == "start":
        st = server.ensure_running(hold=False, pin=True, tcp_port=args.tcp)
        print(f"Embedded PostgreSQL running (pid {st.pid}, data in {st.pgdata}); it runs until "
              "`python -m helpers server stop`.")
        print(server.url(tcp=bool(args.tcp)))
    elif args.action == "stop":
        others = server.stop()
        print("Embedded PostgreSQL stopped." + (f" ({others} process(es) were still using it.)" if others else ""))
    elif args.action == "status":
        st = server.status()
        if not st.running:
            print(f"Embedded PostgreSQL is not running (data directory {st.pgdata}).")
            return 3
        print(f"Embedded PostgreSQL running: pid {st.pid}, data {st.pgdata}, socket {st.socket_dir}"
              + (f", TCP 127.0.0.1:{st.tcp_port}" if st.tcp_port else "") + ".")
        if st.pinned:
            print(f"Used by {len(st.holders)} process(es); started explicitly (runs until `server stop`).")
        elif st.holders:
            print(f"Used by {len(st.holders)} process(es); stops when the last one exits.")
        else:  # its last user was killed before it could stop it
            print("No process uses it any more (its last user was killed); `python -m helpers server stop` stops it, "
                  "and the next notebook to use it will stop it when it exits.")
    elif args.action == "url":
        if args.tcp:
            st = server.ensure_running(hold=False, pin=True, tcp_port=args.tcp)
        else:
            st = server.status()
        print(server.url(tcp=bool(args.tcp)))
        if not st.running:
            print("(not running now: start it with `python -m helpers server start`)", file=sys.stderr)
    return 0


def _data(args: argparse.Namespace) -> int:
    from helpers import db

    if args.action == "verify":
        from helpers.data import datasets

        datasets.verify_manifest()
        print("datasets/ matches its manifest.")
        return 0
    if args.action == "import":
        from helpers.importer import import_path

        if not args.path or not args.lesson:
            print("error: data import needs a PATH (a .csv or .parquet file, or a directory of them) and --lesson NAME.",
                  file=sys.stderr)
            return 2
        for res in import_path(args.path, args.lesson, args.type or ()):
            print(res)
        print(f"Imported into the database of {args.lesson!r}; in a notebook: "
              f"from helpers.importer import open_lesson; mine = open_lesson({args.lesson!r}).")
        return 0
    scale = settings.current_scale(args.scale)
    name = db.ensure_template(scale, force=args.force)
    settings.write_setting("scale", scale)
    print(f"Data set {scale!r} loaded as template {name}; new lessons copy it.")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from helpers.audit import audit

    report = audit(args.target)
    print(report.to_json() if args.json else report.text(explain=args.why))
    if args.fail_on and report.at_least(args.fail_on):
        return 1
    return 0


def _reset(args: argparse.Namespace) -> int:
    from helpers import db

    with db.connect() as admin:
        dropped = 0
        for name, mark in db.own_databases():
            if args.all:
                wanted = True
            else:  # this namespace's lessons only: a test run going on at the same time keeps its own
                wanted = (mark.get("kind") == "lesson" and mark.get("namespace", "") == settings.namespace()
                          and (not args.lessons or mark.get("lesson") in args.lessons))
            if wanted:
                db.drop_own(admin, name)
                print(f"dropped {name}")
                dropped += 1
    print(f"{dropped} database(s) dropped; re-running a notebook's first cell creates its database again.")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.what == "load":
        from helpers.bench.load import main
    elif args.what == "audit":
        from helpers.bench.audit import main
    else:
        from helpers.bench.timer import main
    return main(args.rest)


def _workshop(args: argparse.Namespace) -> int:
    from helpers.workshop.cli import main

    return main(args.rest)


def _build(args: argparse.Namespace) -> int:
    if args.what == "student":
        from helpers.build.student import build

        r = build(args.out)
        print(f"Student copy written to {r['path']}: {r['notebooks']} notebooks, outputs cleared, no reference "
              f"solutions; {r['files']} files, {r['bytes'] / 1e6:.1f} MB.")
        return 0
    from helpers.build.book import build

    r = build(args.out)
    print(f"Book written to {r['path']}: {r['pages']} pages ({r['lessons']} lessons) in {r['seconds']:.0f} s; "
          f"open {r['path']}/index.html.")
    if r["external"]:
        print(f"warning: pages load from other hosts: {r['external']}", file=sys.stderr)
        return 1
    return 0


def _lab(args: argparse.Namespace) -> int:
    """Keep the embedded server up for as long as JupyterLab runs (``make lab``)."""
    asks_for_help = any(a in ("-h", "--help", "--help-all") for a in args.rest)
    if not os.environ.get("DATABASE_URL") and not asks_for_help:
        st = server.ensure_running(hold=True)
        print(f"Embedded PostgreSQL {st.pgdata} is up; it stops when JupyterLab exits.")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--notebook-dir", str(settings.PROJECT_ROOT / "notebooks"),
           *args.rest]
    if os.geteuid() == 0 and "--allow-root" not in cmd:
        cmd.append("--allow-root")
    child = subprocess.Popen(cmd)

    def _forward(signum, _frame):  # SIGTERM/SIGHUP: stop JupyterLab, then exit normally so the server is released
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _forward)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # Ctrl-C reaches JupyterLab too; wait for it to finish shutting down
            continue


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers", description="Postgres Design Workbook tools.")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("server", help="the embedded PostgreSQL 18")
    s.add_argument("action", choices=["start", "stop", "status", "url"])
    s.add_argument("--tcp", nargs="?", type=int, const=settings.DEFAULT_TCP_PORT, default=None, metavar="PORT",
                   help=f"also listen on 127.0.0.1:PORT (default {settings.DEFAULT_TCP_PORT}) for GUI clients")
    s.set_defaults(func=_server)

    d = sub.add_parser("data", help="load or verify the data set; import your own CSV or Parquet files")
    d.add_argument("action", choices=["load", "verify", "import"])
    d.add_argument("path", nargs="?", help="import: a .csv or .parquet file, or a directory of them")
    d.add_argument("--scale", choices=settings.SCALES)
    d.add_argument("--force", action="store_true", help="rebuild even if already loaded")
    d.add_argument("--lesson", help="import: the workbook database to import into (created if missing)")
    d.add_argument("--type", action="append", metavar="[TABLE.]COLUMN=TYPE",
                   help="import: override an inferred column type (repeatable), e.g. --type zip=text")
    d.set_defaults(func=_data)

    a = sub.add_parser("audit", help="audit a database's design and health, read-only (lesson 13)")
    a.add_argument("target", help="a postgresql:// URL, or a lesson name such as 03_indexing")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    a.add_argument("--why", action="store_true", help="text: also print why each finding matters")
    a.add_argument("--fail-on", choices=["warning", "error"],
                   help="exit with status 1 if there is a finding this severe or worse (for CI)")
    a.set_defaults(func=_audit)

    r = sub.add_parser("reset", help="drop lesson databases (only ones the workbook created)")
    r.add_argument("lessons", nargs="*", help="lesson names, e.g. 03_indexing (default: all lessons)")
    r.add_argument("--all", action="store_true",
                   help="drop every database the workbook created for this role: templates, test runs' lessons too")
    r.set_defaults(func=_reset)

    b = sub.add_parser("bench", help="benchmarks that print measured ratios")
    b.add_argument("what", choices=["load", "timer", "audit"])
    b.add_argument("rest", nargs=argparse.REMAINDER, help="options for the benchmark (see its --help)")
    b.set_defaults(func=_bench)

    w = sub.add_parser("workshop", help="N learners on one server: provision, status, teardown, loadtest",
                       add_help=False)  # --help goes to the workshop command itself, which lists its actions
    w.add_argument("rest", nargs=argparse.REMAINDER, help="provision|status|teardown|loadtest and their options")
    w.set_defaults(func=_workshop)

    bu = sub.add_parser("build", help="the student copy (no solutions) or the course as a static HTML book")
    bu.add_argument("what", choices=["student", "book"])
    bu.add_argument("--out", help="output directory (default dist/student or dist/book)")
    bu.set_defaults(func=_build)

    lab = sub.add_parser("lab", help="run JupyterLab with the embedded server up (what `make lab` calls)")
    lab.add_argument("rest", nargs=argparse.REMAINDER)
    lab.set_defaults(func=_lab)

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lab"]:  # everything after `lab` goes to JupyterLab untouched (e.g. --port 8899)
        args = argparse.Namespace(func=_lab, rest=argv[1:])
    elif argv[:1] == ["workshop"]:  # the workshop command parses its own arguments, --help included
        args = argparse.Namespace(func=_workshop, rest=argv[1:])
    else:
        args = p.parse_args(argv)
    try:
        return args.func(args)
    except WorkbookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
