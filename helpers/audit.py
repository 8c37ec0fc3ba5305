"""The design checklist as a tool: a read-only audit of any PostgreSQL database (13_design_checklist).

``audit(db)`` (or ``python -m helpers audit URL|LESSON``) reads the catalog and the statistics views, runs small named
checks and returns a :class:`Report` of :class:`Finding` s: check id, severity, object, what was found and why it
matters, and the SQL that would fix it. The audit never changes the audited database: it only reads (``SELECT``),
and each check runs in its own ``READ ONLY`` transaction, which is rolled back (so a check the role may not run, or
that waits too long for a lock, is skipped and reported while the others go on, and the locks a check takes on the
tables it reads last only as long as that check). ``CHECKS`` lists the checks; each is a function
``check(ctx) -> list[Finding]`` registered with :func:`check`.

Severities: ``error`` (data can go wrong, or a plan will break: a table without a key, money in floating point, a
key about to run out), ``warning`` (a cost or a risk worth fixing), ``info`` (worth knowing; depends on context).
"""
from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

import psycopg
from psycopg import sql as pgsql

from helpers.core.errors import WorkbookError

__all__ = ["Finding", "Report", "Check", "CHECKS", "audit", "connect_for_audit", "SEVERITIES"]

SEVERITIES = ("error", "warning", "info")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

#: Names of tables that record which migrations ran (Alembic first; other tools' names are accepted too).
MIGRATION_TABLES = ("alembic_version", "flyway_schema_history", "schema_migrations", "django_migrations",
                    "knex_migrations", "__drizzle_migrations", "_prisma_migrations")
#: Column names that hold money (for money_in_float).
MONEY_NAME = re.compile(r"(^|_)(price|amount|total|cost|balance|fee|salary|revenue|tax|discount|money|paid)(_|$)")
#: Columns whose values cannot be negative (for missing_domain_check).
NON_NEGATIVE_NAME = re.compile(r"(^|_)(price|amount|total|cost|fee|quantity|qty|stock)(_|$)")
#: Soft-delete markers (for soft_delete_plain_unique).
SOFT_DELETE_NAMES = ("deleted_at", "is_deleted", "deleted", "archived_at", "is_archived")
#: Columns that hold one of a few states (for enum_vs_check).
STATE_NAME = re.compile(r"^(status|kind)$|_(status|kind)$")
WIDE_COLUMNS = 50              # wide_table: more columns than this
BLOAT_DEAD_RATIO = 0.2         # bloated_table: dead rows above this share ...
BLOAT_MIN_DEAD = 10_000        # ... and above this count
UNUSED_MIN_TABLE_SCANS = 100   # unused_index: judge only tables read at least this often since the stats reset
SEQUENCE_WARN, SEQUENCE_ERROR = 0.5, 0.8  # int4_near_limit: share of the type's range used
TYPE_MAX = {"int2": 32767, "int4": 2147483647, "int8": 9223372036854775807}


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class Finding:
    """One thing the audit found: which check, how serious, on which object, what and why, and a fix."""

    check: str
    severity: str
    object: str
    message: str
    fix: str = ""

    def text(self) -> str:
        lines = [f"{self.severity.upper():8}{self.check}  {self.object}", f"        {self.message}"]
        if self.fix:
            lines += ["        fix: " + line if i == 0 else "             " + line
                      for i, line in enumerate(self.fix.splitlines())]
        return "\n".join(lines)


@dataclass
class Report:
    """What :func:`audit` returns: findings, the checks that ran, those skipped (with why), and notes."""

    database: str
    findings: list[Finding] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def at_least(self, severity: str) -> list[Finding]:
        """Findings of ``severity`` or worse (``'warning'`` gives errors and warnings)."""
        return [f for f in self.findings if _RANK[f.severity] <= _RANK[severity]]

    def by_check(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.check] = out.get(f.check, 0) + 1
        return out

    def summary(self) -> str:
        """One line: counts per severity and the checks that ran or were skipped (no timing: stable output)."""
        return (f"{self.count('error')} error(s), {self.count('warning')} warning(s), {self.count('info')} info; "
                f"{len(self.ran)} checks ran" + (f", {len(self.skipped)} skipped" if self.skipped else "") + ".")

    def text(self, min_severity: str = "info", *, explain: bool = False) -> str:
        """The report as text: a header, each finding (worst first) with its fix, skipped checks, notes."""
        lines = [f"Audit of {self.database}: {self.summary()}"]
        shown = [f for f in self.findings if _RANK[f.severity] <= _RANK[min_severity]]
        for f in shown:
            lines.append(f.text())
            if explain:
                lines.append("        why: " + CHECKS[f.check].why)
        hidden = len(self.findings) - len(shown)
        if hidden:
            lines.append(f"({hidden} finding(s) below {min_severity} not shown.)")
        for cid, reason in self.skipped.items():
            lines.append(f"SKIPPED {cid}: {reason}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"database": self.database, "summary": {s: self.count(s) for s in SEVERITIES},
                "ran": self.ran, "skipped": self.skipped, "notes": self.notes,
                "findings": [asdict(f) for f in self.findings]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def frame(self):
        """The findings as a pandas DataFrame (check, severity, object, message, fix)."""
        import pandas as pd

        return pd.DataFrame([asdict(f) for f in self.findings], columns=["check", "severity", "object", "message",
                                                                         "fix"])

    def __str__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text())


# ---------------------------------------------------------------- what the checks read

@dataclass
class Table:
    oid: int
    schema: str
    name: str
    relkind: str
    reltuples: float
    has_data: bool
    readable: bool
    columns: dict[str, "Column"] = field(default_factory=dict)

    @property
    def qname(self) -> str:
        return self.name if self.schema == "public" else f"{self.schema}.{self.name}"

    @property
    def ident(self) -> pgsql.Composable:
        return pgsql.Identifier(self.schema, self.name)


@dataclass
class Column:
    attnum: int
    name: str
    type: str          # format_type(), e.g. "timestamp without time zone"
    typname: str       # pg_type.typname, e.g. "timestamp"
    typtype: str       # 'e' for an enum
    notnull: bool
    identity: bool = False


@dataclass
class Index:
    oid: int
    table: int
    name: str
    schema: str
    keys: tuple[int, ...]       # pg_index.indkey (0 = an expression), key columns only
    nkeys: int
    classes: tuple[int, ...]
    allkeys: tuple[int, ...]    # key and INCLUDE columns
    options: tuple[int, ...]    # pg_index.indoption (DESC, NULLS FIRST) of the key columns
    collations: tuple[int, ...]
    unique: bool
    primary: bool
    constraint: str | None      # the constraint it backs (PK, UNIQUE, EXCLUDE), if any
    partial: bool
    expressions: str | None     # the expression and predicate trees as text (compared, not shown: deparsing them
    predicate: str | None       # would lock every table)
    method: str
    definition: str
    valid: bool


@dataclass
class Constraint:
    name: str
    table: int
    type: str                   # p f u c x
    keys: tuple[int, ...]
    ref_table: int | None
    ref_keys: tuple[int, ...]
    definition: str


class Context:
    """The catalog, read once per audit (so 1,000 tables cost a few queries, not thousands).

    It reads catalog rows only, with no function that opens the tables (``pg_get_expr``, ``pg_relation_size``), so
    it takes no lock on them: a table locked by a migration does not stop it. Checks that read rows take ACCESS
    SHARE locks on those tables until that check's transaction ends, and wait at most ``lock_timeout`` for one.
    """

    def __init__(self, conn: psycopg.Connection, schemas: list[str] | None = None):
        self.conn = conn
        self.schemas = schemas
        self.tables: dict[int, Table] = {}
        self.indexes: list[Index] = []
        self.constraints: list[Constraint] = []
        self.skipped_tables: set[str] = set()
        self._load()

    def q(self, query: Any, params: Any = None) -> list[tuple]:
        return self.conn.execute(query, params).fetchall()

    def _load(self) -> None:
        user_rel = """c.relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog',
                      'information_schema') OR nspname LIKE 'pg\\_toast%%' OR nspname LIKE 'pg\\_temp\\_%%')
                      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                      AND d.objid = c.oid AND d.deptype = 'e')"""
        for oid, schema, name, kind, tuples, has_data, readable in self.q(f"""
                SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples, c.relpages > 0 OR c.reltuples > 0,
                       has_table_privilege(c.oid, 'SELECT')
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {user_rel}
                  AND (%s::text[] IS NULL OR n.nspname = ANY(%s::text[]))
                ORDER BY n.nspname, c.relname""", (self.schemas, self.schemas)):
            self.tables[oid] = Table(oid, schema, name, kind, tuples, has_data, readable)
        for rel, attnum, name, ftype, typname, typtype, notnull, identity in self.q("""
                SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typtype,
                       a.attnotnull, a.attidentity <> ''
                FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attrelid = ANY(%s)
                ORDER BY a.attrelid, a.attnum""", (list(self.tables),)):
            self.tables[rel].columns[name] = Column(attnum, name, ftype, typname, typtype, notnull, identity)
        for row in self.q("""
                SELECT i.indexrelid, i.indrelid, ic.relname, n.nspname, i.indkey::int2[], i.indnkeyatts,
                       i.indclass::oid[], i.indoption::int2[], i.indcollation::oid[], i.indisunique, i.indisprimary, con.conname,
                       i.indpred IS NOT NULL,
                       -- node trees carry the position of each token in the CREATE INDEX text: drop it to compare
                       regexp_replace(i.indexprs::text, ':location -?[0-9]+', '', 'g'),
                       regexp_replace(i.indpred::text, ':location -?[0-9]+', '', 'g'), am.amname, '', i.indisvalid
                FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                JOIN pg_namespace n ON n.oid = ic.relnamespace JOIN pg_am am ON am.oid = ic.relam
                LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x')
                WHERE i.indrelid = ANY(%s)
                ORDER BY ic.relname""", (list(self.tables),)):
            (oid, rel, name, schema, keys, nkeys, classes, opts, colls, uniq, prim, con, partial, exprs, pred, am, dfn,
             valid) = row
            self.indexes.append(Index(oid, rel, name, schema, tuple(keys[:nkeys]), nkeys, tuple(classes[:nkeys]),
                                      tuple(keys), tuple(opts[:nkeys]), tuple(colls[:nkeys]), uniq, prim, con,
                                      partial, exprs, pred, am, dfn, valid))
        for name, rel, typ, keys, ref, ref_keys, dfn in self.q("""
                SELECT conname, conrelid, contype, conkey, nullif(confrelid, 0), confkey, ''
                FROM pg_constraint WHERE conrelid = ANY(%s) ORDER BY conname""", (list(self.tables),)):
            self.constraints.append(Constraint(name, rel, typ, tuple(keys or ()), ref, tuple(ref_keys or ()), dfn))

    # helpers for the checks
    def cols(self, table: Table, attnums: Iterable[int]) -> list[str]:
        by_num = {c.attnum: c.name for c in table.columns.values()}
        return [by_num.get(a, "?") for a in attnums]

    def constraints_of(self, table: Table, kind: str) -> list[Constraint]:
        if not hasattr(self, "_con_by_table"):
            self._con_by_table: dict[int, list[Constraint]] = {}
            for c in self.constraints:
                self._con_by_table.setdefault(c.table, []).append(c)
        return [c for c in self._con_by_table.get(table.oid, ()) if c.type == kind]

    def indexes_of(self, table: Table) -> list[Index]:
        if not hasattr(self, "_idx_by_table"):
            self._idx_by_table: dict[int, list[Index]] = {}
            for i in self.indexes:
                self._idx_by_table.setdefault(i.table, []).append(i)
        return self._idx_by_table.get(table.oid, [])

    def readable(self, table: Table, check_id: str) -> bool:
        """Whether the role may read the table's rows; if not, remember that a data check passed it over."""
        if not table.readable:
            self.skipped_tables.add(table.qname)
        return table.readable


def _ident(*names: str) -> str:
    """An identifier as SQL text for a suggested fix (quoted only when it needs to be)."""
    return ".".join(n if re.fullmatch(r"[a-z_][a-z0-9_]*", n) else '"' + n.replace('"', '""') + '"' for n in names)


def _tname(t: Table) -> str:
    return _ident(t.name) if t.schema == "public" else _ident(t.schema, t.name)


# ---------------------------------------------------------------- the checks

@dataclass(frozen=True)
class Check:
    id: str
    severity: str
    title: str
    why: str
    fn: Callable[[Context], list[Finding]]
    reads_rows: bool = False   # reads table data (needs SELECT on the tables), not only the catalog


CHECKS: dict[str, Check] = {}


def check(id: str, severity: str, title: str, why: str, *, reads_rows: bool = False):
    """Decorator: register a check (its id, default severity, title and why it matters)."""
    def deco(fn: Callable[[Context], list[Finding]]) -> Callable[[Context], list[Finding]]:
        CHECKS[id] = Check(id, severity, title, why, fn, reads_rows)
        return fn

    return deco


@check("no_primary_key", "error", "tables without a primary key",
       "Without a key, duplicate rows cannot be told apart or fixed, UPDATE/DELETE by row is guesswork, ORMs cannot "
       "map the table, and logical replication cannot replicate its updates and deletes.")
def _no_primary_key(ctx: Context) -> list[Finding]:
    out = []
    for t in ctx.tables.values():
        if not ctx.constraints_of(t, "p"):
            out.append(Finding("no_primary_key", "error", t.qname, "The table has no primary key.",
                               f"ALTER TABLE {_tname(t)} ADD PRIMARY KEY (<key columns>);\n-- or, with no natural "
                               f"key: ALTER TABLE {_tname(t)} ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY "
                               "PRIMARY KEY;"))
    return out


def _index_leads_with(ix: Index, cols: tuple[int, ...]) -> bool:
    """Whether a (valid, non-partial) index can serve lookups on ``cols`` in any order: they are its leading keys."""
    n = len(cols)
    return ix.valid and not ix.partial and ix.method == "btree" and len(ix.keys) >= n \
        and set(ix.keys[:n]) == set(cols)


@check("fk_without_index", "warning", "foreign keys without a supporting index",
       "Deleting or updating a parent row makes PostgreSQL look for child rows: without an index on the referencing "
       "columns that is a full scan of the child table per parent row, and joins from parent to children scan too.")
def _fk_without_index(ctx: Context) -> list[Finding]:
    out = []
    for con in ctx.constraints:
        if con.type != "f":
            continue
        t = ctx.tables[con.table]
        if any(_index_leads_with(ix, con.keys) for ix in ctx.indexes_of(t)):
            continue
        cols = ctx.cols(t, con.keys)
        out.append(Finding("fk_without_index", "warning", f"{t.qname}.{con.name}",
                           f"Foreign key ({', '.join(cols)}) has no index that starts with its column(s).",
                           f"CREATE INDEX CONCURRENTLY ON {_tname(t)} ({', '.join(_ident(c) for c in cols)});"))
    return out


def _parent_for(ctx: Context, t: Table, stem: str) -> tuple[Table, str] | None:
    """The table a ``<stem>_id`` column presumably references: same schema, named stem, stems or stem+es (or
    stem -> stems with y -> ies), with a one-column primary key."""
    names = {stem, stem + "s", stem + "es"} | ({stem[:-1] + "ies"} if stem.endswith("y") else set())
    for cand in ctx.tables.values():
        if cand.schema == t.schema and cand.name in names:
            pk = ctx.constraints_of(cand, "p")
            if pk and len(pk[0].keys) == 1:
                return cand, ctx.cols(cand, pk[0].keys)[0]
    return None


@check("id_column_without_fk", "warning", "columns that look like references (*_id) without a foreign key",
       "Nothing stops such a column from pointing at rows that do not exist (orphans), so every join and every "
       "report built on it can silently lose or invent data; the orphan count says what a foreign key would refuse.",
       reads_rows=True)
def _id_column_without_fk(ctx: Context) -> list[Finding]:
    out = []
    fk_cols = {(c.table, k) for c in ctx.constraints if c.type == "f" for k in c.keys}
    for t in ctx.tables.values():
        pk = ctx.constraints_of(t, "p")
        pk_cols = set(pk[0].keys) if pk else set()
        for col in t.columns.values():
            m = re.fullmatch(r"(.+)_id", col.name)
            if not m or (t.oid, col.attnum) in fk_cols or {col.attnum} == pk_cols:
                continue
            found = _parent_for(ctx, t, m.group(1))
            if found is None or found[0].oid == t.oid:
                continue
            parent, pcol = found
            readable = [ctx.readable(t, "id_column_without_fk"), ctx.readable(parent, "id_column_without_fk")]
            if not all(readable):
                orphans = None
            else:
                orphans = ctx.conn.execute(pgsql.SQL(
                    "SELECT count(*) FROM {c} AS ch WHERE ch.{col} IS NOT NULL AND NOT EXISTS "
                    "(SELECT 1 FROM {p} AS pa WHERE pa.{pcol} = ch.{col})").format(
                    c=t.ident, col=pgsql.Identifier(col.name), p=parent.ident, pcol=pgsql.Identifier(pcol))
                ).fetchone()[0]
            fkname = _ident(f"{t.name}_{col.name}_fkey"[:63])
            fk = (f"ALTER TABLE {_tname(t)} ADD CONSTRAINT {fkname} FOREIGN KEY ({_ident(col.name)}) REFERENCES "
                  f"{_tname(parent)} ({_ident(pcol)}) NOT VALID;\nALTER TABLE {_tname(t)} VALIDATE CONSTRAINT "
                  f"{fkname};")
            if orphans:
                msg = (f"{col.name} looks like a reference to {parent.qname}.{pcol} but has no foreign key; "
                       f"{orphans:,} row(s) point at no {parent.qname} row (orphans), which a foreign key would refuse.")
                fix = (f"-- first repair or delete the {orphans:,} orphan row(s), e.g.:\n-- SELECT * FROM {_tname(t)} "
                       f"ch WHERE NOT EXISTS (SELECT 1 FROM {_tname(parent)} pa WHERE pa.{_ident(pcol)} = "
                       f"ch.{_ident(col.name)});\n" + fk)
            else:
                extra = "" if orphans == 0 else " (orphans not counted: no SELECT privilege)"
                msg = (f"{col.name} looks like a reference to {parent.qname}.{pcol} but has no foreign key; "
                       f"no orphans today{extra}." if orphans == 0 else
                       f"{col.name} looks like a reference to {parent.qname}.{pcol} but has no foreign key{extra}.")
                fix = fk
            out.append(Finding("id_column_without_fk", "warning", f"{t.qname}.{col.name}", msg, fix))
    return out


@check("nullable_fk", "warning", "nullable foreign-key columns that every row fills",
       "A nullable foreign key says 'this row may have no parent'. When every row has one, the relationship is "
       "required in practice: NOT NULL makes the schema say so, and stops the first row without a parent.",
       reads_rows=True)
def _nullable_fk(ctx: Context) -> list[Finding]:
    out = []
    for con in ctx.constraints:
        if con.type != "f":
            continue
        t = ctx.tables[con.table]
        cols = [c for c in t.columns.values() if c.attnum in con.keys and not c.notnull]
        if not cols or not ctx.readable(t, "nullable_fk"):
            continue
        for col in cols:
            # a NULL anywhere means the relationship is optional by design; no rows means there is nothing to judge
            has_rows, has_null = ctx.conn.execute(pgsql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {t}), EXISTS (SELECT 1 FROM {t} WHERE {c} IS NULL)").format(
                t=t.ident, c=pgsql.Identifier(col.name))).fetchone()
            if has_rows and not has_null:
                out.append(Finding(
                    "nullable_fk", "warning", f"{t.qname}.{col.name}",
                    f"{col.name} (foreign key {con.name}) allows NULL, yet every row has a value: if the relationship "
                    "is required, declare it.",
                    f"ALTER TABLE {_tname(t)} ALTER COLUMN {_ident(col.name)} SET NOT NULL;\n-- on a big table, "
                    f"first: ALTER TABLE {_tname(t)} ADD CHECK ({_ident(col.name)} IS NOT NULL) NOT VALID; then "
                    "VALIDATE it (SET NOT NULL then skips its scan)"))
    return out


def _same_shape(a: Index, b: Index) -> bool:
    return (a.method == b.method and a.allkeys == b.allkeys and a.nkeys == b.nkeys and a.classes == b.classes
            and a.options == b.options and a.collations == b.collations and a.expressions == b.expressions
            and a.predicate == b.predicate)


@check("duplicate_index", "warning", "duplicate and redundant indexes",
       "Every index is written on every INSERT and on UPDATEs of its columns, takes disk and cache, and is vacuumed; "
       "an index that another one already covers costs all that and speeds up nothing.")
def _duplicate_index(ctx: Context) -> list[Finding]:
    out = []
    by_table: dict[int, list[Index]] = {}
    for ix in ctx.indexes:
        by_table.setdefault(ix.table, []).append(ix)
    for tid, ixs in by_table.items():
        t = ctx.tables[tid]
        reported: set[int] = set()
        for a in ixs:
            for b in ixs:
                if a.oid == b.oid or a.oid in reported or not a.valid or not b.valid:
                    continue
                drop = f"DROP INDEX CONCURRENTLY {_ident(a.schema, a.name) if a.schema != 'public' else _ident(a.name)};"
                if _same_shape(a, b):
                    # identical keys: keep the one that backs a constraint or enforces uniqueness; else keep one
                    rank = lambda ix: (not ix.primary, not ix.constraint, not ix.unique, ix.name)  # noqa: E731
                    keep_b = rank(b) < rank(a)  # the primary key is always kept, then a constraint, then unique
                    if not keep_b:
                        continue
                    why = "is the same index as" if a.unique == b.unique else "duplicates the unique index"
                    out.append(Finding("duplicate_index", "warning", f"{t.qname}.{a.name}",
                                       f"{a.name} {why} {b.name} on the same column(s).",
                                       drop if not a.constraint else
                                       f"ALTER TABLE {_tname(t)} DROP CONSTRAINT {_ident(a.constraint)};"))
                    reported.add(a.oid)
                elif (a.method == b.method == "btree" and not a.unique and not a.partial and not a.expressions
                      and not b.partial and not b.expressions and len(a.keys) < len(b.keys)
                      and b.keys[:len(a.keys)] == a.keys and b.classes[:len(a.classes)] == a.classes
                      and b.collations[:len(a.keys)] == a.collations and b.options[:len(a.keys)] == a.options
                      and len(a.allkeys) == len(a.keys)):
                    out.append(Finding("duplicate_index", "warning", f"{t.qname}.{a.name}",
                                       f"{a.name} is redundant: its column(s) are the leading column(s) of {b.name}, "
                                       "which serves the same lookups.", drop))
                    reported.add(a.oid)
    return out


@check("unused_index", "info", "unused indexes (by the statistics, on this server)",
       "An index no query uses still costs writes, space and vacuum time (indexes that serve a foreign key are not "
       "reported: parent deletes need them, however rarely). Caveats: the counts start at the last "
       "statistics reset (or when the database was created, or the last crash recovery or restore), a rare monthly "
       "report may need the index, and each "
       "replica keeps its own counts (an index used only by queries on a replica looks unused here).")
def _unused_index(ctx: Context) -> list[Finding]:
    out = []
    rows = ctx.q("""SELECT s.indexrelid, s.idx_scan, t.seq_scan + coalesce(t.idx_scan, 0)
                    FROM pg_stat_user_indexes s JOIN pg_stat_user_tables t ON t.relid = s.relid
                    WHERE s.relid = ANY(%s)""", (list(ctx.tables),))
    scans = {oid: (iscan, tscan) for oid, iscan, tscan in rows}
    fk_keys = [(c.table, c.keys) for c in ctx.constraints if c.type == "f"]
    for ix in ctx.indexes:
        iscan, tscan = scans.get(ix.oid, (None, 0))
        if ix.unique or ix.constraint or iscan is None or iscan > 0 or tscan < UNUSED_MIN_TABLE_SCANS:
            continue
        if any(tid == ix.table and _index_leads_with(ix, keys) for tid, keys in fk_keys):
            continue  # it serves a foreign key: used by parent deletes and updates, however rare
        t = ctx.tables[ix.table]
        out.append(Finding("unused_index", "info", f"{t.qname}.{ix.name}",
                           f"{ix.name} was never used by a query, while {t.qname} was read at least "
                           f"{UNUSED_MIN_TABLE_SCANS} times since the statistics were reset; check replicas and rare "
                           "jobs before dropping it.",
                           f"DROP INDEX CONCURRENTLY {_ident(ix.name) if ix.schema == 'public' else _ident(ix.schema, ix.name)};"))
    reset = ctx.q("SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()")
    if out and reset and reset[0][0] is not None:
        out = [Finding(f.check, f.severity, f.object, f.message + f" (statistics since {reset[0][0]:%Y-%m-%d}.)", f.fix)
               for f in out]
    return out


@check("timestamp_without_time_zone", "warning", "timestamp without time zone",
       "A timestamp without time zone is a wall-clock reading with no zone: the same instant is stored differently "
       "by clients in different zones, and daylight-saving changes make hours repeat or vanish. timestamptz stores "
       "an instant (UTC) and shows it in the session's zone. (The exception: a future local event, such as a concert "
       "at 20:00 in Lisbon, is a wall-clock time plus a zone; store the zone beside it. A calendar day is a date.)")
def _timestamp_without_tz(ctx: Context) -> list[Finding]:
    out = []
    for t in ctx.tables.values():
        for col in t.columns.values():
            if col.typname == "timestamp":
                out.append(Finding("timestamp_without_time_zone", "warning", f"{t.qname}.{col.name}",
                                   f"{col.name} is {col.type}.",
                                   f"ALTER TABLE {_tname(t)} ALTER COLUMN {_ident(col.name)} TYPE timestamptz "
                                   f"USING {_ident(col.name)} AT TIME ZONE 'UTC';  -- the zone the values were "
                                   "written in; rewrites the table"))
    return out


@check("money_in_float", "error", "money in floating point",
       "real and double precision are binary fractions: 0.1 + 0.2 is not 0.3, so sums of prices drift by cents and "
       "equality tests fail. Money belongs in numeric(p, s) (or an integer number of cents).")
def _money_in_float(ctx: Context) -> list[Finding]:
    out = []
    for t in ctx.tables.values():
        for col in t.columns.values():
            if col.typname in ("float4", "float8") and MONEY_NAME.search(col.name):
                out.append(Finding("money_in_float", "error", f"{t.qname}.{col.name}",
                                   f"{col.name} holds money as {col.type}.",
                                   f"ALTER TABLE {_tname(t)} ALTER COLUMN {_ident(col.name)} TYPE numeric(12, 2);"))
    return out


@check("int4_near_limit", "error", "int4 keys and sequences near their limit",
       "When a sequence reaches the maximum of its column's type, every INSERT fails until the column is widened, "
       "and widening a big table's key rewrites it (and its indexes) under an exclusive lock: do it early.")
def _int4_near_limit(ctx: Context) -> list[Finding]:
    out = []
    rows = ctx.q("""
        SELECT s.schemaname, s.sequencename, s.last_value, s.max_value, t.typname, d.refobjid, a.attname
        FROM pg_sequences s
        JOIN pg_class sc ON sc.relname = s.sequencename
             AND sc.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = s.schemaname)
        LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = sc.oid
             AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        LEFT JOIN pg_type t ON t.oid = a.atttypid
        WHERE (%s::text[] IS NULL OR s.schemaname = ANY(%s::text[]))""", (ctx.schemas, ctx.schemas))
    for schema, seq, last, seqmax, coltype, rel, col in rows:
        if last is None:  # never used, or no privilege to read it
            continue
        limit = min(seqmax, TYPE_MAX.get(coltype, seqmax))
        if limit >= TYPE_MAX["int8"]:
            continue
        used = last / limit
        if used < SEQUENCE_WARN:
            continue
        sev = "error" if used >= SEQUENCE_ERROR else "warning"
        t = ctx.tables.get(rel)
        obj = f"{t.qname}.{col}" if t and col else (seq if schema == "public" else f"{schema}.{seq}")
        fix = (f"ALTER TABLE {_tname(t)} ALTER COLUMN {_ident(col)} TYPE bigint;  -- rewrites the table\n"
               if t and col and coltype in ("int2", "int4") else "") + f"ALTER SEQUENCE {_ident(schema, seq)} AS bigint;"
        out.append(Finding("int4_near_limit", sev, obj,
                           f"Sequence {seq} has used {used:.0%} of its range ({last:,} of {limit:,}).", fix))
    return out


@check("missing_timestamps", "warning", "created_at / updated_at missing where the schema's convention uses them",
       "When most tables record when a row was created or last changed, the ones that do not are usually an "
       "oversight, found the day someone needs to know when a row appeared or what changed since yesterday.")
def _missing_timestamps(ctx: Context) -> list[Finding]:
    out = []
    tables = list(ctx.tables.values())
    for col in ("created_at", "updated_at"):
        having = [t for t in tables if col in t.columns]
        if len(tables) < 3 or len(having) * 2 <= len(tables):  # a convention: more than half of the tables
            continue
        for t in tables:
            if col not in t.columns:
                out.append(Finding("missing_timestamps", "warning", t.qname,
                                   f"{len(having)} of {len(tables)} tables have {col}; {t.qname} does not.",
                                   f"ALTER TABLE {_tname(t)} ADD COLUMN {col} timestamptz;\nALTER TABLE {_tname(t)} "
                                   f"ALTER COLUMN {col} SET DEFAULT now();  -- new rows; backfill old ones from a real "
                                   "source if there is one (ADD ... DEFAULT now() would date every existing row to "
                                   "the migration), then SET NOT NULL"
                                   + ("\n-- and keep it current (a trigger or the ORM)" if col == "updated_at" else "")))
    return out


@check("soft_delete_plain_unique", "error", "soft-delete columns with a plain (not partial) unique index",
       "With soft delete, a 'deleted' row stays in the table. A plain unique index still counts it, so the same "
       "e-mail or name can never be used again; a partial unique index (WHERE deleted_at IS NULL) enforces "
       "uniqueness among live rows only.")
def _soft_delete_plain_unique(ctx: Context) -> list[Finding]:
    out = []
    for t in ctx.tables.values():
        marker = next((c for c in SOFT_DELETE_NAMES if c in t.columns), None)
        if marker is None:
            continue
        live = f"{_ident(marker)} IS NULL" if t.columns[marker].typname != "bool" else f"NOT {_ident(marker)}"
        by_num = {c.attnum: c for c in t.columns.values()}
        for ix in ctx.indexes_of(t):
            if ix.unique and not ix.primary and not ix.partial:
                # generated or random ids (identity, uuid) are never reused, so a deleted row's value blocks nobody
                if all(k in by_num and (by_num[k].identity or by_num[k].typname == "uuid") for k in ix.keys):
                    continue
                cols = ", ".join(_ident(c) for c in ctx.cols(t, ix.keys)) if 0 not in ix.keys else "<same keys>"
                drop = (f"ALTER TABLE {_tname(t)} DROP CONSTRAINT {_ident(ix.constraint)};" if ix.constraint
                        else f"DROP INDEX CONCURRENTLY {_ident(ix.name)};")
                out.append(Finding("soft_delete_plain_unique", "error", f"{t.qname}.{ix.name}",
                                   f"{t.qname} is soft-deleted ({marker}) but {ix.name} is unique over deleted rows "
                                   "too.",
                                   f"CREATE UNIQUE INDEX CONCURRENTLY ON {_tname(t)} ({cols}) WHERE {live};\n{drop}"))
    return out


@check("enum_vs_check", "warning", "states in free text (warning) and enums (info) vs CHECK constraints",
       "A closed set of states needs the database to refuse anything else. An enum type does (values can be added "
       "and, since PostgreSQL 10, renamed, but not removed or reordered without recreating the type); a CHECK "
       "(col IN (...)) or a lookup table with a "
       "foreign key is easier to change. A free text status column accepts typos.")
def _enum_vs_check(ctx: Context) -> list[Finding]:
    out = []
    checked = {(c.table, k) for c in ctx.constraints if c.type in ("c", "f") for k in c.keys}
    for t in ctx.tables.values():
        for col in t.columns.values():
            if col.typtype == "e":
                out.append(Finding("enum_vs_check", "info", f"{t.qname}.{col.name}",
                                   f"{col.name} uses the enum type {col.type}: adding or renaming a value is cheap "
                                   "(ALTER TYPE ... ADD VALUE / RENAME VALUE), removing one means a new type.",
                                   f"-- if the set changes often: ALTER TABLE {_tname(t)} ALTER COLUMN "
                                   f"{_ident(col.name)} TYPE text;\n-- ALTER TABLE {_tname(t)} ADD CHECK "
                                   f"({_ident(col.name)} IN (...));"))
            elif STATE_NAME.search(col.name) and col.typname in ("text", "varchar", "bpchar") \
                    and (t.oid, col.attnum) not in checked:
                out.append(Finding("enum_vs_check", "warning", f"{t.qname}.{col.name}",
                                   f"{col.name} holds states as free {col.type} with no CHECK and no foreign key: any "
                                   "typo is accepted.",
                                   f"ALTER TABLE {_tname(t)} ADD CHECK ({_ident(col.name)} IN ('...', '...')) NOT VALID;"
                                   f"\n-- then ALTER TABLE {_tname(t)} VALIDATE CONSTRAINT <its name>;"))
    return out


@check("wide_or_bloated_table", "warning", "very wide or bloated tables",
       f"A table with more than {WIDE_COLUMNS} columns usually mixes several things (split it, 1:1 or by how the "
       "columns are used). A table whose dead rows (left by UPDATE and DELETE) are a large share of its rows reads "
       "and caches pages of garbage until VACUUM reclaims them: autovacuum is not keeping up.")
def _wide_or_bloated(ctx: Context) -> list[Finding]:
    out = []
    for t in ctx.tables.values():
        if len(t.columns) > WIDE_COLUMNS:
            out.append(Finding("wide_or_bloated_table", "warning", t.qname,
                               f"{t.qname} has {len(t.columns)} columns.",
                               "-- move groups of columns used together into their own table, 1:1 on the key"))
    for rel, live, dead in ctx.q("SELECT relid, n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE relid = ANY(%s)",
                                 (list(ctx.tables),)):
        if dead >= BLOAT_MIN_DEAD and dead > BLOAT_DEAD_RATIO * (live + dead):
            t = ctx.tables[rel]
            out.append(Finding("wide_or_bloated_table", "warning", t.qname,
                               f"{t.qname} has about {dead:,} dead rows for {live:,} live ones (statistics estimate).",
                               f"VACUUM (ANALYZE) {_tname(t)};  -- and check autovacuum for it; VACUUM FULL or "
                               "pg_repack return the space to the OS"))
    return out


@check("never_analyzed", "warning", "tables never analysed",
       "Without statistics the planner guesses row counts, and wrong guesses pick wrong plans (a nested loop over a "
       "million rows). Autovacuum analyses tables eventually; after a bulk load, run ANALYZE yourself.")
def _never_analyzed(ctx: Context) -> list[Finding]:
    # pg_statistic rows appear with the first ANALYZE (not with VACUUM or an index build, whose effect on
    # pg_class.reltuples differs between versions); pg_stats shows those of the columns this role may read
    with_stats = {oid for (oid,) in ctx.q(
        "SELECT DISTINCT c.oid FROM pg_stats s JOIN pg_namespace n ON n.nspname = s.schemaname "
        "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename WHERE c.oid = ANY(%s)",
        (list(ctx.tables),))}
    out = []
    for t in ctx.tables.values():
        if t.relkind != "r" or t.oid in with_stats or not ctx.readable(t, "never_analyzed"):
            continue
        # relpages is 0 and reltuples -1 (PG 14+) until the first VACUUM, ANALYZE or index build; only then ask for the size (which
        # takes a lock on the table until the audit ends, so not for every table)
        if not t.has_data and not ctx.q("SELECT pg_relation_size(%s) > 0", (t.oid,))[0][0]:
            continue
        out.append(Finding("never_analyzed", "warning", t.qname, f"{t.qname} holds data but has no statistics: it "
                           "has never been analysed.", f"ANALYZE {_tname(t)};"))
    return out


@check("pg_stat_statements_missing", "warning", "pg_stat_statements not installed",
       "pg_stat_statements is how you find the queries that cost the most time (lesson 09). Without it, the first "
       "slow-down in production starts with guessing.")
def _pg_stat_statements(ctx: Context) -> list[Finding]:
    if ctx.q("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"):
        try:  # installed, but the view only works when the library is preloaded
            with ctx.conn.transaction():
                ctx.q("SELECT 1 FROM pg_stat_statements LIMIT 0")
            return []
        except psycopg.errors.ObjectNotInPrerequisiteState:
            return [Finding("pg_stat_statements_missing", "warning", "database",
                            "The pg_stat_statements extension is installed but its library is not preloaded, so "
                            "the view cannot be read.",
                            "-- postgresql.conf: shared_preload_libraries = 'pg_stat_statements', then restart")]
    try:  # shared_preload_libraries is readable only by superusers and pg_read_all_settings
        with ctx.conn.transaction():
            preloaded = "pg_stat_statements" in ctx.q("SELECT current_setting('shared_preload_libraries')")[0][0]
    except psycopg.errors.InsufficientPrivilege:
        preloaded = None
    fix = "CREATE EXTENSION pg_stat_statements;"
    if preloaded is None:
        return [Finding("pg_stat_statements_missing", "warning", "database",
                        "The pg_stat_statements extension is not installed in this database (whether the library is "
                        "preloaded could not be read by this role).",
                        "-- if needed, postgresql.conf: shared_preload_libraries = 'pg_stat_statements', restart, "
                        "then:\n" + fix)]
    if not preloaded:
        fix = "-- postgresql.conf: shared_preload_libraries = 'pg_stat_statements', restart, then:\n" + fix
    return [Finding("pg_stat_statements_missing", "warning", "database",
                    "The pg_stat_statements extension is not installed in this database"
                    + (" (the library is preloaded)." if preloaded else " and the library is not preloaded."), fix)]


@check("no_migration_history", "warning", "no migration history table",
       "A migration history table (alembic_version for Alembic) records which schema changes ran; without one, "
       "nobody can say which version of the schema a database has, and deploys re-run or skip changes.")
def _no_migration_history(ctx: Context) -> list[Finding]:
    if ctx.q("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = ANY(%s) "
             "AND c.relkind IN ('r', 'p') AND (%s::text[] IS NULL OR n.nspname = ANY(%s::text[]))",
             (list(MIGRATION_TABLES), ctx.schemas, ctx.schemas)):
        return []
    return [Finding("no_migration_history", "warning", "database",
                    "No alembic_version (nor another migration tool's history table): schema changes are untracked.",
                    "-- manage the schema with migrations: alembic init; alembic revision --autogenerate; "
                    "alembic stamp head (lesson 08)")]


@check("wal_archiving", "warning", "no WAL archiving, or archiving failures",
       "A nightly dump restores to last night. Continuous WAL archiving (archive_mode, archive_command or "
       "archive_library) lets you restore to any moment (point-in-time recovery, lesson 12); failed archiving "
       "silently breaks that, and keeps WAL piling up on the server's disk.")
def _wal_archiving(ctx: Context) -> list[Finding]:
    mode = ctx.q("SELECT current_setting('archive_mode')")[0][0]
    if mode == "off":
        return [Finding("wal_archiving", "warning", "server", "archive_mode is off: this server archives no WAL, so "
                        "it can be restored only to its last dump or base backup.",
                        "-- postgresql.conf: archive_mode = on, archive_command = '<copy %p to safe storage>'; "
                        "restart; take a base backup")]
    try:
        with ctx.conn.transaction():  # in case a server restricts reading it
            command, library = ctx.q("SELECT current_setting('archive_command'), "
                                     "current_setting('archive_library', true)")[0]
    except psycopg.errors.InsufficientPrivilege:
        command = library = "?"
    if not command and not library and mode != "off":
        return [Finding("wal_archiving", "error", "server", f"archive_mode is {mode} but neither archive_command nor "
                        "archive_library is set: WAL is kept on the server, waiting to be archived, and nothing is.",
                        "-- postgresql.conf: archive_command = '<copy %p to safe storage>' (reload)")]
    failed, last_failed, last_ok = ctx.q(
        "SELECT failed_count, last_failed_time, last_archived_time FROM pg_stat_archiver")[0]
    if failed and last_failed and (last_ok is None or last_failed > last_ok):
        return [Finding("wal_archiving", "error", "server",
                        f"WAL archiving is failing: {failed:,} failure(s), the last one after the last success.",
                        "-- read the server log for archive_command's error, fix it, then check pg_stat_archiver")]
    return []


@check("missing_domain_check", "warning", "missing CHECK constraints on obvious domains",
       "A price, amount or quantity below zero is a bug that should fail at the INSERT, not show up in a report a "
       "month later. A CHECK constraint is the last line of defence that every client passes through. (Where a "
       "negative value is legitimate, such as a refund or a stock correction, the finding does not apply.)")
def _missing_domain_check(ctx: Context) -> list[Finding]:
    out = []
    checked = {(c.table, k) for c in ctx.constraints if c.type == "c" for k in c.keys}
    numeric = {"int2", "int4", "int8", "numeric", "float4", "float8", "money"}
    for t in ctx.tables.values():
        for col in t.columns.values():
            if col.typname in numeric and NON_NEGATIVE_NAME.search(col.name) and (t.oid, col.attnum) not in checked:
                out.append(Finding("missing_domain_check", "warning", f"{t.qname}.{col.name}",
                                   f"Nothing stops {col.name} from being negative.",
                                   f"ALTER TABLE {_tname(t)} ADD CONSTRAINT {_ident(f'{t.name}_{col.name}_check')} "
                                   f"CHECK ({_ident(col.name)} >= 0) NOT VALID;\nALTER TABLE {_tname(t)} VALIDATE "
                                   f"CONSTRAINT {_ident(f'{t.name}_{col.name}_check')};"))
    return out


# ---------------------------------------------------------------- running them

def connect_for_audit(target: str) -> psycopg.Connection:
    """A connection for the CLI: ``target`` is a ``postgresql://`` URL or a lesson name such as ``03_indexing``."""
    from helpers import db

    target = target.strip()
    if re.match(r"^postgres(ql)?(\+psycopg2?)?://", target):
        kwargs = db.parse_database_url(target)
        kwargs.setdefault("connect_timeout", 5)
        kwargs["options"] = " ".join(filter(None, [kwargs.get("options"), db.session_options()]))
        try:
            return psycopg.connect(**kwargs, autocommit=True, application_name="pdw:audit")
        except psycopg.OperationalError as exc:
            host = kwargs.get("host") or "the local socket"
            low = str(exc).lower()
            if "password" in low or "authentication" in low or "role" in low:
                why = "the login was rejected"
            elif "database" in low and "does not exist" in low:
                why = f"there is no database {kwargs.get('dbname')!r}"
            else:
                why = "nothing answered there"
            raise WorkbookError(f"Cannot audit {db._mask(target)}: {why}; check the host, port, user, password and "
                                "database name in the URL.") from None
    if not re.fullmatch(r"[A-Za-z0-9_]+", target):
        raise WorkbookError(f"{target!r} is neither a postgresql:// URL nor a lesson name such as 03_indexing.")
    with db.connect() as admin:
        name = db.db_name(admin.info.user, target)
        if not db.exists(admin, name):
            raise WorkbookError(f"Lesson {target} has no database yet ({name}); run the notebook's first cell, or "
                                "pass a postgresql:// URL.")
    return db.connect(name, app="pdw:audit")


@contextlib.contextmanager
def _read_only(conn: psycopg.Connection, timeout: str, lock_timeout: str) -> Iterator[None]:
    """A READ ONLY transaction, always rolled back, with the audit's statement and lock timeouts."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(pgsql.SQL("SET LOCAL statement_timeout = {}").format(pgsql.Literal(timeout)))
        # a table locked by a migration makes a check wait this long at most, then it is skipped
        conn.execute(pgsql.SQL("SET LOCAL lock_timeout = {}").format(pgsql.Literal(lock_timeout)))
        yield


def audit(conn_or_lesson: Any, *, checks: Iterable[str] | None = None, schemas: Iterable[str] | str | None = None,
          timeout: str = "30s", lock_timeout: str = "2s") -> Report:
    """Audit a database read-only and return a :class:`Report` (lesson 13).

    ``conn_or_lesson`` is a Lesson (``db``), a psycopg connection or a ``postgresql://`` URL. ``checks`` limits the
    run to some check ids, ``schemas`` the tables looked at to some schemas (default: all). Each check runs in its
    own READ ONLY transaction, rolled back at its end, with ``timeout`` (statement_timeout) and ``lock_timeout``; a
    check that fails (for lack of privileges, a lock it could not get, a timeout) is listed in ``report.skipped``
    with the reason, and the others still run.
    """
    from helpers.db import as_connection, explain_sql_error

    own = isinstance(conn_or_lesson, str)
    conn = connect_for_audit(conn_or_lesson) if own else as_connection(conn_or_lesson)
    wanted = list(CHECKS) if checks is None else list(checks)
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown:
        raise WorkbookError(f"Unknown check(s) {', '.join(unknown)}; the checks are {', '.join(CHECKS)}.")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise WorkbookError("The connection has a transaction open (or failed); run ROLLBACK or COMMIT first, then "
                            "audit again.")
    start = time.perf_counter()
    report = Report(database=conn.info.dbname + (f" (schema {schemas})" if isinstance(schemas, str) else ""))
    try:
        # Each step is its own READ ONLY transaction: nothing can write, and the ACCESS SHARE locks a check takes on
        # the tables it reads are released when it ends, not held for the whole audit.
        try:
            with _read_only(conn, timeout, lock_timeout):
                ctx = Context(conn, [schemas] if isinstance(schemas, str) else
                              (list(schemas) if schemas is not None else None))
        except psycopg.Error as exc:
            raise WorkbookError(f"The audit could not read the catalog: {explain_sql_error(exc)}") from None
        if not ctx.tables:
            report.notes.append("The database has no tables of its own (outside pg_catalog and "
                                "information_schema), so only the database- and server-level checks found "
                                "anything to look at.")
        for cid in wanted:
            chk = CHECKS[cid]
            try:
                with _read_only(conn, timeout, lock_timeout):
                    found = chk.fn(ctx)
            except psycopg.errors.LockNotAvailable:
                report.skipped[cid] = (f"a table it reads was locked (by a migration?) for longer than "
                                       f"{lock_timeout}; run the audit again later.")
                continue
            except psycopg.errors.QueryCanceled:
                report.skipped[cid] = f"it ran longer than {timeout} and was stopped."
                continue
            except psycopg.Error as exc:
                report.skipped[cid] = explain_sql_error(exc).rstrip(".") + "."
                continue
            report.ran.append(cid)
            report.findings.extend(found)
        if ctx.skipped_tables:
            names = sorted(ctx.skipped_tables)
            report.notes.append(
                f"No SELECT privilege on {len(names)} table(s) ({', '.join(names[:5])}"
                + (", ..." if len(names) > 5 else "") + "): the checks that read rows or their statistics "
                "(id_column_without_fk, nullable_fk, never_analyzed) passed them over; the catalog checks "
                "covered them.")
    finally:
        if own:
            conn.close()
    report.findings.sort(key=lambda f: (_RANK[f.severity], f.check, f.object))
    report.seconds = time.perf_counter() - start
    return report
