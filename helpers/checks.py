"""The environment check at the top of 00_start_here: is everything the course needs here?"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import metadata

from helpers.db import Lesson, MIN_SERVER_VERSION

PACKAGES = ("psycopg", "SQLAlchemy", "pandas", "numpy", "matplotlib", "ipywidgets", "nbval")
#: Listed when installed, but not needed to follow the lessons: the test tools (`make test`), which `make lab`
#: and the student copy do not install.
OPTIONAL_PACKAGES = ("nbval",)
#: Extensions later lessons create (contrib modules); missing ones only affect the lessons that use them.
EXTENSIONS = ("pg_trgm", "btree_gin", "pg_stat_statements", "pgstattuple", "pg_buffercache", "postgres_fdw")
PRELOADED = ("pg_stat_statements", "auto_explain")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


@dataclass
class EnvironmentReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every required check passed (optional ones only limit single lessons)."""
        return all(c.ok for c in self.checks if c.required)

    def text(self) -> str:
        lines = []
        for c in self.checks:
            mark = "ok " if c.ok else ("MISSING" if c.required else "note")
            lines.append(f"[{mark}] {c.name}: {c.detail}")
        lines.append("Everything the course needs is here." if self.ok else
                     "Something the course needs is missing: see the lines marked MISSING.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p, cycle) -> None:  # IPython shows the text, not a dataclass repr
        p.text(self.text())


def environment_check(db: Lesson) -> EnvironmentReport:
    """Check Python, the pinned packages, the server version, privileges and the extensions the lessons use."""
    rep = EnvironmentReport()
    rep.checks.append(Check("Python", sys.version_info >= (3, 11), sys.version.split()[0]))
    versions = []
    for pkg in PACKAGES:
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            if pkg in OPTIONAL_PACKAGES:
                rep.checks.append(Check(f"package {pkg}", False, "not installed (only `make test` needs it)",
                                        required=False))
            else:
                rep.checks.append(Check(f"package {pkg}", False, "not installed (run `make lab` to install)"))
    rep.checks.append(Check("packages", True, ", ".join(versions)))
    num = db.conn.info.server_version
    rep.checks.append(Check("PostgreSQL", num >= MIN_SERVER_VERSION, f"{db.version} ({db.target.kind})"))
    can_create = db.scalar("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
    rep.checks.append(Check("may create databases", bool(can_create), f"role {db.conn.info.user}"))
    available = set(db.sql("SELECT name FROM pg_available_extensions")["name"])
    missing = [e for e in EXTENSIONS if e not in available]
    rep.checks.append(Check("extensions", not missing,
                            "all available: " + ", ".join(EXTENSIONS) if not missing
                            else "not installed on this server: " + ", ".join(missing), required=False))
    preload = db.scalar("SELECT current_setting('shared_preload_libraries')") or ""
    loaded = {x.strip() for x in preload.split(",")}
    absent = [p for p in PRELOADED if p not in loaded]
    rep.checks.append(Check("preloaded libraries", not absent,
                            ", ".join(PRELOADED) if not absent
                            else f"{', '.join(absent)} not in shared_preload_libraries (lesson 09 shows how to add "
                                 "them)", required=False))
    return rep
