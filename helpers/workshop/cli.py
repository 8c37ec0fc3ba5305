"""``python -m helpers workshop provision|status|teardown|loadtest`` (see ``--help``)."""
from __future__ import annotations

import argparse
import os
import sys

from helpers.core import settings
from helpers.fmt import fmt_time


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _provision(args: argparse.Namespace) -> int:
    from helpers.workshop import provision as pv

    ws = pv.provision(args.learners, prefix=args.prefix, scale=args.scale, connection_limit=args.connection_limit,
                      statement_timeout=args.statement_timeout, work_mem=args.work_mem,
                      temp_file_limit=args.temp_file_limit, host=args.host, database=args.database,
                      progress=not args.quiet, copy_own=not args.fresh_load)
    print(f"Workshop {ws.prefix}: {len(ws.learners)} learner roles ({ws.learners[0].role} .. {ws.learners[-1].role}), "
          f"shared template {ws.template} ({ws.scale!r}).")
    print(f"Times: template {fmt_time(ws.timings['template'])}, roles {fmt_time(ws.timings['roles'])}, "
          f"total {fmt_time(ws.timings['total'])}.")
    for note in ws.notes:
        print(f"Note: {note}")
    print(f"Credentials (keep private): {settings.show_path(ws.directory / 'credentials.csv')} and one "
          f"<learner>.env per learner in {settings.show_path(ws.directory)}.")
    return 0


def _status(args: argparse.Namespace) -> int:
    from helpers.workshop import provision as pv

    rows = pv.status(args.prefix)
    if not rows:
        print(f"No workshop {args.prefix!r} on this server.")
        return 3
    print(f"{'learner':<16} {'sessions':>8} {'active':>6}  databases")
    for r in rows:
        dbs = ", ".join(f"{n} ({_size(s)})" for n, s in r["databases"]) or "-"
        print(f"{r['learner']:<16} {r['sessions']:>8} {r['active']:>6}  {dbs}")
    return 0


def _teardown(args: argparse.Namespace) -> int:
    import time

    from helpers.workshop import provision as pv

    t0 = time.perf_counter()
    done = pv.teardown(args.prefix, forget=not args.keep_credentials)
    print(f"Workshop {args.prefix}: dropped {len(done['roles'])} roles and {len(done['databases'])} databases "
          f"in {fmt_time(time.perf_counter() - t0)}.")
    return 0


def _loadtest(args: argparse.Namespace) -> int:
    from helpers.workshop import loadtest

    return loadtest.main(args)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers workshop",
                                description="Workshop mode: N learners on one PostgreSQL server.")
    p.add_argument("--server", help="the workshop server's URL, as the instructor (default: DATABASE_URL, else the "
                                    "embedded server)")
    sub = p.add_subparsers(dest="action", required=True)

    pr = sub.add_parser("provision", help="create N learner roles and the shared template; write credentials")
    pr.add_argument("--learners", type=int, required=True, metavar="N")
    pr.add_argument("--prefix", help="starts every role and database name (default: ws + 6 random hex digits)")
    pr.add_argument("--scale", choices=settings.SCALES, help="data set for the shared template (default: PDW_SCALE, else the last `data load`, else default)")
    pr.add_argument("--connection-limit", type=int, default=10)
    pr.add_argument("--statement-timeout", default="60s")
    pr.add_argument("--work-mem", default="16MB")
    pr.add_argument("--temp-file-limit", default="1GB")
    pr.add_argument("--host", default=os.environ.get("PDW_WORKSHOP_HOST") or None,
                    help="host name learners use to reach the server (default: PDW_WORKSHOP_HOST, else the "
                         "instructor's)")
    pr.add_argument("--database", default="postgres", help="database in the learners' DATABASE_URL")
    pr.add_argument("--fresh-load", action="store_true",
                    help="load the data into the workshop's template even if your own loaded template could be copied")
    pr.add_argument("--quiet", action="store_true")
    pr.set_defaults(func=_provision)

    st = sub.add_parser("status", help="learners, their databases and sizes, sessions open now")
    st.add_argument("--prefix", required=True)
    st.set_defaults(func=_status)

    td = sub.add_parser("teardown", help="drop exactly what provision created")
    td.add_argument("--prefix", required=True)
    td.add_argument("--keep-credentials", action="store_true", help="keep var/workshop/<prefix>/")
    td.set_defaults(func=_teardown)

    lt = sub.add_parser("loadtest", help="N learners run a notebook at the same time, each as its own role")
    lt.add_argument("--learners", type=int, required=True, metavar="N")
    lt.add_argument("--notebook", default="03_indexing")
    lt.add_argument("--scale", choices=settings.SCALES, default=None,
                    help="data set (default: the notebook's own minimum, else default)")
    lt.add_argument("--timeout", type=float, default=900, help="seconds per notebook")
    lt.add_argument("--out", default=None, help="results folder (default var/workshop/loadtest)")
    lt.add_argument("--plot", action="store_true", help="only redraw the plot and table from stored results")
    lt.set_defaults(func=_loadtest)

    args = p.parse_args(argv)
    if args.server:
        os.environ["DATABASE_URL"] = args.server
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
