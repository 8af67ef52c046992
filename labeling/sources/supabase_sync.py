"""Import conversations from Supabase into the pool: the only module that imports ``supabase``.

Two ways in, from settings:

- ``SUPABASE_DB_URL``: the project's PostgreSQL DSN (Supabase is PostgreSQL), read with SQLAlchemy +
  psycopg. Preferred for large tables: the previous turns come from the same query (a correlated
  ``ARRAY(SELECT … LIMIT n)`` subquery, fast with an index on (conversation, order column)).
- ``SUPABASE_URL`` + ``SUPABASE_KEY``: supabase-py over REST (PostgREST); previous turns cost one
  request per message.

What is read (settings, overridable per call): ``SUPABASE_MESSAGES_TABLE`` (default ``messages``, may be
``schema.table``), ``SUPABASE_ID_COLUMN`` (``id``), ``SUPABASE_TEXT_COLUMN`` (``content``),
``SUPABASE_ROLE_COLUMN`` (``role``; empty: no filter) with ``SUPABASE_ROLES`` (``user``: only user
messages), ``SUPABASE_CONVERSATION_COLUMN`` (``conversation_id``), ``SUPABASE_ORDER_COLUMN``
(``created_at``) and ``SUPABASE_CONTEXT_TURNS`` (3 previous turns of any role, stored oldest first in
``Message.context`` as ``"role: text"``).

Incremental: rows are read in pages ordered by (order column, id) from the watermark
``SyncState["supabase:<table>"]``; each page is committed together with its new watermark, so a rerun
(or a run after a crash) fetches only new rows, and 100k rows never sit in memory at once. Rows whose
order column is NULL are never read (give them a value). A table or column that does not exist fails
with its name and the list of what exists. With ``PII_REDACTION=true`` the redacted text and context
are stored in ``Message.text_redacted`` / ``meta["context_redacted"]`` (the original stays local).
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from sqlmodel import Session

from core.vocab import Progress
from db import crud


class SupabaseNotConfiguredError(RuntimeError):
    pass


class SupabaseSchemaError(ValueError):
    """A table or column that does not exist (the message lists what exists)."""


@dataclass
class SyncConfig:
    table: str = "messages"
    id_column: str = "id"
    text_column: str = "content"
    role_column: str | None = "role"
    roles: list[str] = field(default_factory=lambda: ["user"])
    conversation_column: str | None = "conversation_id"
    order_column: str = "created_at"
    context_turns: int = 3
    redact: bool = False

    @classmethod
    def from_settings(cls, **overrides: Any) -> SyncConfig:
        from core.settings import get_settings

        s = get_settings()
        cfg = cls(
            table=s.supabase_messages_table, id_column=s.supabase_id_column, text_column=s.supabase_text_column,
            role_column=s.supabase_role_column or None,
            roles=[r.strip() for r in s.supabase_roles.split(",") if r.strip()],
            conversation_column=s.supabase_conversation_column or None, order_column=s.supabase_order_column,
            context_turns=s.supabase_context_turns, redact=s.pii_redaction,
        )
        return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def state_name(self) -> str:
        return f"supabase:{self.table}"


@dataclass
class Row:
    id: Any
    text: str | None
    conversation: Any
    order: Any
    role: str | None
    context: list[str]


# --- connection ---------------------------------------------------------------------------------------


def _dsn() -> str | None:
    from core.settings import get_settings

    s = get_settings()
    if s.supabase_db_url is None or not s.supabase_db_url.get_secret_value().strip():
        return None
    url = s.supabase_db_url.get_secret_value().strip()
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise SupabaseNotConfiguredError(
        f"SUPABASE_DB_URL must be a PostgreSQL DSN (postgresql://user:password@host:5432/postgres), found a "
        f"{url.split(':', 1)[0]!r} URL"
    )


def _rest() -> tuple[str, str] | None:
    from core.settings import get_settings

    s = get_settings()
    if s.supabase_url and s.supabase_key is not None and s.supabase_key.get_secret_value().strip():
        return s.supabase_url.rstrip("/"), s.supabase_key.get_secret_value()
    return None


def kb_configured() -> bool:
    return _dsn() is not None or _rest() is not None


_NOT_CONFIGURED = (
    "Supabase is not configured: set SUPABASE_DB_URL (the project's PostgreSQL connection string, from "
    "Project Settings > Database) or SUPABASE_URL and SUPABASE_KEY (Project Settings > API) in .env"
)


def _split_table(table: str) -> tuple[str | None, str]:
    return tuple(table.split(".", 1)) if "." in table else (None, table)  # type: ignore[return-value]


def _check_schema(engine: Any, cfg_table: str, columns: list[str], *, setting: str) -> None:
    from sqlalchemy import inspect

    schema, table = _split_table(cfg_table)
    insp = inspect(engine)
    tables = insp.get_table_names(schema=schema) + insp.get_view_names(schema=schema)
    if table not in tables:
        where = f"schema {schema!r}" if schema else "the default schema"
        raise SupabaseSchemaError(
            f"table {cfg_table!r} not found in {where} of the Supabase database; tables that exist: "
            f"{sorted(tables) or 'none'}. Set {setting} to one of them."
        )
    existing = [c["name"] for c in insp.get_columns(table, schema=schema)]
    missing = [c for c in columns if c and c not in existing]
    if missing:
        raise SupabaseSchemaError(
            f"column(s) {missing} not found in table {cfg_table!r}; its columns: {existing}. Set the matching "
            "SUPABASE_*_COLUMN setting (or the --*-column option)."
        )


def _quoted(engine: Any, name: str) -> str:
    prep = engine.dialect.identifier_preparer
    return ".".join(prep.quote(part) for part in name.split("."))


# --- watermark values (JSON-safe, typed) --------------------------------------------------------------


def _to_json(value: Any) -> dict[str, Any]:
    if isinstance(value, dt.datetime):
        return {"t": "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {"t": "date", "v": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"t": "uuid", "v": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"t": "decimal", "v": str(value)}
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return {"t": "str", "v": str(value)}
    return {"t": type(value).__name__, "v": value}


def _from_json(d: dict[str, Any]) -> Any:
    t, v = d["t"], d["v"]
    return {
        "datetime": dt.datetime.fromisoformat, "date": dt.date.fromisoformat, "uuid": uuid.UUID,
        "decimal": decimal.Decimal, "int": int, "float": float,
    }.get(t, str)(v)


# --- readers ----------------------------------------------------------------------------------------------


def _pg_pages(cfg: SyncConfig, watermark: dict | None, page_size: int) -> tuple[int, Iterator[list[Row]]]:
    from sqlalchemy import bindparam, create_engine, text

    engine = create_engine(_dsn(), pool_pre_ping=True)
    cols = [cfg.id_column, cfg.text_column, cfg.order_column, cfg.role_column, cfg.conversation_column]
    _check_schema(engine, cfg.table, [c for c in cols if c], setting="SUPABASE_MESSAGES_TABLE")
    q = lambda c: _quoted(engine, c)  # noqa: E731
    t = _quoted(engine, cfg.table)
    idc, txt, ordc = q(cfg.id_column), q(cfg.text_column), q(cfg.order_column)
    role_sel = f"m.{q(cfg.role_column)}" if cfg.role_column else "NULL"
    conv_sel = f"m.{q(cfg.conversation_column)}" if cfg.conversation_column else "NULL"
    if cfg.conversation_column and cfg.context_turns > 0:
        prev_role = f"coalesce(p.{q(cfg.role_column)}::text, '') || ': ' || " if cfg.role_column else ""
        ctx = (f"ARRAY(SELECT {prev_role}coalesce(p.{txt}::text, '') FROM {t} p "
               f"WHERE p.{q(cfg.conversation_column)} = m.{q(cfg.conversation_column)} "
               f"AND (p.{ordc}, p.{idc}) < (m.{ordc}, m.{idc}) ORDER BY p.{ordc} DESC, p.{idc} DESC "
               f"LIMIT {int(cfg.context_turns)})")
    else:
        ctx = "ARRAY[]::text[]"
    where = [f"m.{ordc} IS NOT NULL"]
    params: dict[str, Any] = {}
    if cfg.role_column and cfg.roles:
        where.append(f"m.{q(cfg.role_column)}::text IN :roles")
        params["roles"] = list(cfg.roles)
    base_where = list(where)

    def build(wm: dict | None, *, count: bool = False) -> Any:
        conds = list(base_where)
        p = dict(params)
        if wm:
            conds.append(f"(m.{ordc}, m.{idc}) > (:wm_order, :wm_id)")
            p["wm_order"], p["wm_id"] = _from_json(wm["order"]), _from_json(wm["id"])
        sql = (f"SELECT count(*) FROM {t} m WHERE {' AND '.join(conds)}" if count else
               f"SELECT m.{idc} AS id, m.{txt}::text AS text, {conv_sel} AS conv, m.{ordc} AS ord, "
               f"{role_sel} AS role, {ctx} AS ctx FROM {t} m WHERE {' AND '.join(conds)} "
               f"ORDER BY m.{ordc}, m.{idc} LIMIT {int(page_size)}")
        stmt = text(sql)
        if "roles" in p:
            stmt = stmt.bindparams(bindparam("roles", expanding=True))
        return stmt, p

    with engine.connect() as conn:
        stmt, p = build(watermark, count=True)
        total = int(conn.execute(stmt, p).scalar_one())

    def pages() -> Iterator[list[Row]]:
        wm = watermark
        try:
            while True:
                stmt, p = build(wm)
                with engine.connect() as conn:
                    rows = [Row(r.id, r.text, r.conv, r.ord, r.role, list(reversed(r.ctx or [])))
                            for r in conn.execute(stmt, p)]
                if not rows:
                    return
                yield rows
                wm = {"order": _to_json(rows[-1].order), "id": _to_json(rows[-1].id)}
        finally:
            engine.dispose()

    return total, pages()


def _rest_client() -> Any:
    from supabase import create_client

    conf = _rest()
    if conf is None:
        raise SupabaseNotConfiguredError(_NOT_CONFIGURED)
    return create_client(conf[0], conf[1])


def _rest_schema_error(table: str, err: Exception) -> SupabaseSchemaError | None:
    """Turn PostgREST's "no such table/column" into a message listing what exists (OpenAPI root)."""
    import httpx

    code = getattr(err, "code", None) or ""
    if code not in ("PGRST205", "42P01", "42703", "PGRST204"):
        return None
    conf = _rest()
    tables: dict[str, list[str]] = {}
    try:
        resp = httpx.get(f"{conf[0]}/rest/v1/", headers={"apikey": conf[1], "Authorization": f"Bearer {conf[1]}"},
                         timeout=30)
        for name, d in (resp.json().get("definitions") or {}).items():
            tables[name] = sorted((d.get("properties") or {}).keys())
    except (httpx.HTTPError, ValueError):
        pass
    _, bare = _split_table(table)
    if code in ("PGRST205", "42P01"):
        return SupabaseSchemaError(f"table {table!r} not found through the Supabase REST API; tables that exist: "
                                   f"{sorted(tables) or 'unknown'}. Set SUPABASE_MESSAGES_TABLE.")
    return SupabaseSchemaError(f"a column was not found in {table!r} ({getattr(err, 'message', err)}); its columns: "
                               f"{tables.get(bare, 'unknown')}. Set the matching SUPABASE_*_COLUMN setting.")


def _rest_pages(cfg: SyncConfig, watermark: dict | None, page_size: int) -> tuple[int | None, Iterator[list[Row]]]:
    from postgrest.exceptions import APIError

    client = _rest_client()
    schema, table = _split_table(cfg.table)
    cols = [c for c in (cfg.id_column, cfg.text_column, cfg.order_column, cfg.role_column, cfg.conversation_column) if c]

    def table_q() -> Any:
        return (client.schema(schema) if schema else client).table(table)

    def pages() -> Iterator[list[Row]]:
        wm = watermark
        while True:
            q = table_q().select(",".join(dict.fromkeys(cols))).not_.is_(cfg.order_column, "null")
            if cfg.role_column and cfg.roles:
                q = q.in_(cfg.role_column, cfg.roles)
            if wm:
                o, i = _from_json(wm["order"]), _from_json(wm["id"])
                o_s = o.isoformat() if hasattr(o, "isoformat") else o
                q = q.or_(f"{cfg.order_column}.gt.{o_s},and({cfg.order_column}.eq.{o_s},{cfg.id_column}.gt.{i})")
            q = q.order(cfg.order_column).order(cfg.id_column).limit(page_size)
            try:
                data = q.execute().data
            except APIError as e:
                raise (_rest_schema_error(cfg.table, e) or e) from e
            if not data:
                return
            rows = []
            for r in data:
                ctx: list[str] = []
                conv = r.get(cfg.conversation_column) if cfg.conversation_column else None
                if conv is not None and cfg.context_turns > 0:
                    prev = (table_q().select(",".join(c for c in (cfg.text_column, cfg.role_column) if c))
                            .eq(cfg.conversation_column, conv).lt(cfg.order_column, r[cfg.order_column])
                            .order(cfg.order_column, desc=True).limit(cfg.context_turns).execute().data)
                    ctx = [(f"{p.get(cfg.role_column) or ''}: " if cfg.role_column else "") + str(p.get(cfg.text_column) or "")
                           for p in reversed(prev)]
                rows.append(Row(r[cfg.id_column], r.get(cfg.text_column), conv, r[cfg.order_column],
                                r.get(cfg.role_column) if cfg.role_column else None, ctx))
            yield rows
            wm = {"order": _to_json(rows[-1].order), "id": _to_json(rows[-1].id)}

    return None, pages()


# --- service ------------------------------------------------------------------------------------------------


def sync_supabase(
    session: Session,
    *,
    progress: Progress | None = None,
    page_size: int = 1000,
    limit: int | None = None,
    full: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Fetch new user messages from Supabase into the pool (see the module docstring).

    ``overrides``: any :class:`SyncConfig` field (table, text_column, roles…). ``full`` ignores the
    watermark (rows already imported are deduplicated, nothing is duplicated). ``limit`` stops after that
    many rows (at a page boundary, the watermark still exact). Returns counts and the new watermark."""
    from labeling.sources.redact import redact, redact_many

    cfg = SyncConfig.from_settings(**overrides)
    if page_size < 1:
        raise ValueError(f"expected page_size >= 1, found {page_size}")
    if limit is not None:
        page_size = max(1, min(page_size, limit))
    state = crud.get_sync_state(session, name=cfg.state_name)
    watermark = None if full else state.get("watermark")
    if _dsn() is not None:
        source = "postgres"
        total, pages = _pg_pages(cfg, watermark, page_size)
    elif _rest() is not None:
        source = "rest"
        total, pages = _rest_pages(cfg, watermark, page_size)
    else:
        raise SupabaseNotConfiguredError(_NOT_CONFIGURED)
    if limit is not None and total is not None:
        total = min(total, limit)
    report = {"source": source, "table": cfg.table, "fetched": 0, "created": 0, "duplicates": 0, "empty": 0,
              "redacted": 0, "pages": 0, "watermark": watermark, "full": full, "seconds": 0.0}
    started = time.perf_counter()
    if progress:
        progress(0, total)
    for rows in pages:
        _write_page(session, rows, cfg, report, redact=redact, redact_many=redact_many)
        watermark = {"order": _to_json(rows[-1].order), "id": _to_json(rows[-1].id)}
        crud.set_sync_state(session, name=cfg.state_name,
                            value={**state, "watermark": watermark, "last_run_rows": report["fetched"]})
        session.commit()
        report["pages"] += 1
        report["watermark"] = watermark
        if progress:
            progress(report["fetched"], total)
        if limit is not None and report["fetched"] >= limit:
            pages.close()
            break
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _write_page(session: Session, rows: list[Row], cfg: SyncConfig, report: dict[str, Any], *,
                redact: Callable[[str], str], redact_many: Callable[[list[str] | None], list[str] | None]) -> None:
    """One page in bulk: dedup on the text hash (against the pool and within the page), one INSERT."""
    from sqlalchemy import insert
    from sqlmodel import col, select

    from db.models import Message

    by_hash: dict[str, Row] = {}
    for r in rows:
        report["fetched"] += 1
        if r.text is None or not str(r.text).strip():
            report["empty"] += 1
            continue
        h = crud.text_hash(str(r.text))
        if h in by_hash:
            report["duplicates"] += 1
        else:
            by_hash[h] = r
    existing = crud.message_ids_by_hash(session, hashes=list(by_hash))
    report["duplicates"] += len(existing)
    now = crud.utcnow()
    new_rows = []
    for h, r in by_hash.items():
        if h in existing:
            continue
        text = str(r.text)
        meta: dict[str, Any] = {"role": r.role, "supabase_table": cfg.table, "supabase_order": _to_json(r.order)["v"]}
        row = {"text": text, "text_hash": h, "text_redacted": None, "source": "supabase",
               "source_ref": f"{cfg.table}:{r.id}"[:512],
               "conversation_id": None if r.conversation is None else str(r.conversation)[:256],
               "context": r.context or None, "split": "pool", "meta": meta, "created_at": now}
        if cfg.redact:
            row["text_redacted"] = redact(text)
            if r.context:
                meta["context_redacted"] = redact_many(r.context)
            report["redacted"] += row["text_redacted"] != text
        new_rows.append(row)
    if new_rows:
        session.execute(insert(Message.__table__), new_rows)
    report["created"] += len(new_rows)
    if cfg.redact and existing:  # rows already in the pool (e.g. from a CSV) get their redacted copy too
        for msg in session.exec(select(Message).where(col(Message.id).in_(list(existing.values())),
                                                      col(Message.text_redacted).is_(None))):
            msg.text_redacted = redact(msg.text)
            if msg.context:
                msg.meta = {**(msg.meta or {}), "context_redacted": redact_many(msg.context)}
            report["redacted"] += msg.text_redacted != msg.text
            session.add(msg)
    session.flush()


def read_kb_passages(limit: int = 200) -> list[str]:
    """Up to ``limit`` knowledge-base passages (``SUPABASE_KB_TABLE``.``SUPABASE_KB_TEXT_COLUMN``)."""
    from core.settings import get_settings

    s = get_settings()
    table, column = s.supabase_kb_table, s.supabase_kb_text_column
    if _dsn() is not None:
        from sqlalchemy import create_engine, text

        engine = create_engine(_dsn(), pool_pre_ping=True)
        try:
            _check_schema(engine, table, [column], setting="SUPABASE_KB_TABLE")
            t, c = _quoted(engine, table), _quoted(engine, column)
            with engine.connect() as conn:
                rows = conn.execute(text(f"SELECT {c}::text FROM {t} WHERE {c} IS NOT NULL "
                                         f"AND length({c}::text) > 40 ORDER BY 1 LIMIT {int(limit)}")).scalars()
                return [r for r in rows]
        finally:
            engine.dispose()
    if _rest() is not None:
        from postgrest.exceptions import APIError

        schema, bare = _split_table(table)
        client = _rest_client()
        try:
            data = (client.schema(schema) if schema else client).table(bare).select(column).limit(limit).execute().data
        except APIError as e:
            raise (_rest_schema_error(table, e) or e) from e
        return [str(r[column]) for r in data if r.get(column) and len(str(r[column])) > 40]
    raise SupabaseNotConfiguredError(_NOT_CONFIGURED)
