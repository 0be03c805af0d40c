"""The Alembic migrations produce exactly the schema the models describe, on both backends."""

import asyncio
import hashlib
import json
import re
import sqlite3
import sys
import uuid
from asyncio.subprocess import PIPE
from contextlib import closing
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from domain.db import utcnow
from domain.email import tracking
from domain.models import Base
from runtime.migrate import ROOT, alembic_config, made_on, upgrade, upgrade_async
from tests.conftest import PG_ADMIN_URL, _pg_reachable


async def test_migrated_schema_matches_the_models(engine):
    def diff(connection):
        context = MigrationContext.configure(
            connection, opts={"include_object": made_on(connection.dialect.name)}
        )
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


def _sqlite_schema(path: Path) -> dict[str, tuple]:
    """What SQLite enforces of each table: columns, foreign keys, indexes (with their WHERE), CHECKs and
    AUTOINCREMENT; column order left out (a column added later comes last in a migrated table)."""
    with closing(sqlite3.connect(path)) as db:
        schema = {}
        tables = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'"
        ).fetchall()
        for name, sql in tables:
            columns = sorted(row[1:] for row in db.execute(f"PRAGMA table_info({name})"))
            keys = sorted(row[2:] for row in db.execute(f"PRAGMA foreign_key_list({name})"))
            indexes = sorted(
                " ".join(sql.split())
                for (sql,) in db.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                    (name,),
                )
            )
            checks = sorted(re.findall(r"CHECK \((.*?)\)", sql))
            schema[name] = (columns, keys, indexes, checks, "AUTOINCREMENT" in sql)
        return schema


def test_a_migrated_sqlite_database_enforces_what_the_models_describe(tmp_path):
    upgrade(f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}")
    engine = create_engine(f"sqlite:///{tmp_path / 'created.db'}")
    Base.metadata.create_all(engine)
    engine.dispose()

    migrated, created = _sqlite_schema(tmp_path / "migrated.db"), _sqlite_schema(tmp_path / "created.db")

    assert migrated == created
    assert migrated["customers"][4] and migrated["events"][4]  # ids never reused (AUTOINCREMENT)


def test_making_sqlite_ids_unique_for_ever_keeps_every_row_and_skips_ids_already_gone(tmp_path):
    path = tmp_path / "journeys.db"
    url = f"sqlite+aiosqlite:///{path}"
    command.upgrade(alembic_config(url), "0019_customer_merges")
    now = "2026-11-01 10:00:00"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("PRAGMA foreign_keys = ON")
        for id_, user in ((1, "kim"), (2, "ada")):
            db.execute(
                "INSERT INTO customers (id, user_id, traits, first_seen_at, last_seen_at, created_at,"
                " updated_at) VALUES (?, ?, '{}', ?, ?, ?, ?)",
                (id_, user, now, now, now, now),
            )
        db.execute("INSERT INTO customer_aliases VALUES ('v-1', 1, ?)", (now,))
        db.execute("INSERT INTO loyalty_accounts VALUES (2, 50, 'silver', 50, ?, 50, ?, ?)", (now, now, now))
        db.execute("INSERT INTO customer_merges VALUES (7, 1, ?)", (now,))  # visitor 7 became kim
        db.execute(
            "INSERT INTO customer_erasures (customer_id, events_erased, erased_at) VALUES (5, 0, ?)", (now,)
        )

    upgrade(url)

    with closing(sqlite3.connect(path)) as db, db:
        db.execute("PRAGMA foreign_keys = ON")
        # The copies of customers dropped the originals: nothing referring to them went with them.
        assert db.execute("SELECT anonymous_id, customer_id FROM customer_aliases").fetchall() == [("v-1", 1)]
        assert db.execute("SELECT customer_id, balance FROM loyalty_accounts").fetchall() == [(2, 50)]
        assert db.execute("SELECT merged_id, customer_id FROM customer_merges").fetchall() == [(7, 1)]
        db.execute(
            "INSERT INTO customers (user_id, traits, first_seen_at, last_seen_at, created_at, updated_at)"
            " VALUES ('lee', '{}', ?, ?, ?, ?)",
            (now, now, now, now),
        )
        # Not 3: id 7 named the visitor that merged into kim.
        assert db.execute("SELECT id FROM customers WHERE user_id = 'lee'").fetchone() == (8,)
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request, tmp_path):
    """The URL of a database with no tables yet, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'journeys.db'}"
        return
    if not _pg_reachable():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    name = f"journeys_migration_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_the_suppressions_of_customers_erased_before_keep_only_digests(empty_database):
    url = empty_database
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0028_segments_refresh_error")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO customer_erasures (customer_id, email_sha256, events_erased, erased_at)"
                    " VALUES (5, :digest, 0, :at), (6, NULL, 0, :at)"
                ),
                {"digest": hashlib.sha256(b"gone@example.com").hexdigest(), "at": utcnow()},
            )
            await conn.execute(
                text(
                    "INSERT INTO suppressions (address, reason, detail, created_at) VALUES (:a, :r, :d, :at)"
                ),
                [
                    {"a": "gone@example.com", "r": "bounced", "d": "550 gone@example.com", "at": utcnow()},
                    {"a": "kept@example.com", "r": "complained", "d": "abuse report", "at": utcnow()},
                ],
            )
        await upgrade_async(url)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT address, reason, detail FROM suppressions ORDER BY id"))
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("sha256:" + hashlib.sha256(b"gone@example.com").hexdigest(), "bounced", None),
        ("kept@example.com", "complained", "abuse report"),  # nobody erased had it
    ]


async def test_customers_get_the_digest_of_their_email_and_those_at_an_erased_address_a_recheck(
    empty_database,
):
    url = empty_database
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0032_template_versions_reply_to")
    engine = create_async_engine(url)
    gone = "sha256:" + hashlib.sha256("zoë@example.com".encode()).hexdigest()
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO customers (id, user_id, email, traits, first_seen_at, last_seen_at,"
                    " created_at, updated_at) VALUES (:id, :user, :email, '{}', :at, :at, :at, :at)"
                ),
                [
                    {
                        "id": 1,
                        "user": "u1",
                        "email": "zoë@example.com",
                        "at": utcnow(),
                    },  # an erased person's address
                    {"id": 2, "user": "u2", "email": "ann@example.com", "at": utcnow()},
                    {"id": 3, "user": "u3", "email": None, "at": utcnow()},
                    {
                        "id": 25_000,
                        "user": "u25_000",
                        "email": "bob@example.com",
                        "at": utcnow(),
                    },  # a later batch of ids
                ],
            )
            await conn.execute(
                text("INSERT INTO suppressions (address, reason, created_at) VALUES (:a, 'bounced', :at)"),
                [{"a": gone, "at": utcnow()}, {"a": "ann@example.com", "at": utcnow()}],
            )
        await upgrade_async(url)
        async with engine.connect() as conn:
            digests = dict((await conn.execute(text("SELECT id, email_sha256 FROM customers"))).all())
            rechecks = (await conn.execute(text("SELECT customer_id FROM segment_rechecks"))).scalars().all()
    finally:
        await engine.dispose()
    assert digests == {
        1: hashlib.sha256("zoë@example.com".encode()).digest()[:16],
        2: hashlib.sha256(b"ann@example.com").digest()[:16],
        3: None,
        25_000: hashlib.sha256(b"bob@example.com").digest()[:16],
    }
    assert rechecks == [1]  # its subscription conditions no longer hold; ann's never did


async def test_existing_messages_and_engagement_events_get_their_refs_in_every_batch(empty_database):
    url = empty_database
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "0034_broadcasts_operational")
    engine = create_async_engine(url)
    message = (
        "INSERT INTO messages (id, idempotency_key, message_id, template_id, status, attempts, meta,"
        " created_at) VALUES (:id, :key, :key, :template, 'sent', 1, '{}', :at)"
    )
    event = (
        "INSERT INTO events (id, message_id, type, name, customer_id, properties, traits, context,"
        " timestamp, received_at) VALUES (:id, :mid, 'track', :name, 1, :properties, '{}', '{}', :at, :at)"
    )
    keys = {1: ("journey/j/customer/1/0/hello/1", "welcome"), 2: ("café/1", None), 25_000: ("b/2", "promo")}
    properties = {  # event id -> properties
        1: {"message_ref": "abc~welcome", "template_id": "welcome"},
        2: {"message_ref": 7},
        3: {"message_ref": "x" * 97},
        4: {"revenue": 10},
        30_000: {"message_ref": "def~promo", "url": "https://shop.example/"},  # a later batch
    }
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(message),
                [{"id": i, "key": k, "template": t, "at": utcnow()} for i, (k, t) in keys.items()],
            )
            await conn.execute(
                text(event),
                [
                    {
                        "id": i,
                        "mid": f"e{i}",
                        "name": "Email Opened",
                        "properties": json.dumps(p),
                        "at": utcnow(),
                    }
                    for i, p in properties.items()
                ],
            )
        await upgrade_async(url)
        async with engine.connect() as conn:
            messages = dict((await conn.execute(text("SELECT id, message_ref FROM messages"))).all())
            events = dict((await conn.execute(text("SELECT id, message_ref FROM events"))).all())
        assert messages == {i: tracking.message_ref(k, t) for i, (k, t) in keys.items()}
        assert events == {1: "abc~welcome", 2: None, 3: None, 4: None, 30_000: "def~promo"}
        # and down again, and up (the back-fill finds every row again)
        await asyncio.to_thread(command.downgrade, config, "0034_broadcasts_operational")
        await upgrade_async(url)
        async with engine.connect() as conn:
            assert dict((await conn.execute(text("SELECT id, message_ref FROM events"))).all()) == events
            names = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("events")})
        assert "ix_events_message_ref" in names
    finally:
        await engine.dispose()


async def test_the_read_indexes_go_down_and_up_again(empty_database):
    url = empty_database
    config = alembic_config(url)
    engine = create_async_engine(url)

    async def indexes() -> set[str]:
        def names(connection) -> set[str]:
            inspector = inspect(connection)
            tables = ("messages", "segment_memberships", "customers")
            return {i["name"] for t in tables for i in inspector.get_indexes(t)}

        async with engine.connect() as conn:
            return await conn.run_sync(names)

    ours = {"ix_messages_journey", "ix_segment_memberships_open"}
    if url.startswith("postgresql"):
        ours.add("ix_customers_traits")  # SQLite has no index of a JSON document's keys
    try:
        await upgrade_async(url)
        assert ours <= await indexes()
        await asyncio.to_thread(command.downgrade, config, "0030_customers_email_prefix")
        left = await indexes()
        assert not ours & left and "ix_customers_email" in left
        await upgrade_async(url)
        assert ours <= await indexes()
    finally:
        await engine.dispose()


async def _postgres_only(url: str) -> None:
    if not url.startswith("postgresql"):
        pytest.skip("CREATE INDEX CONCURRENTLY is PostgreSQL's; SQLite builds them as before")


_CUSTOMER = (
    "INSERT INTO customers (user_id, traits, first_seen_at, last_seen_at, created_at, updated_at)"
    " VALUES (:u, '{}', now(), now(), now(), now())"
)


async def test_a_read_index_left_invalid_by_an_interrupted_build_is_rebuilt(empty_database):
    url = empty_database
    await _postgres_only(url)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0030_customers_email_prefix")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(_CUSTOMER), [{"u": "a"}, {"u": "b"}])
        # A concurrent build that fails leaves its index behind, INVALID, as an interrupted one does.
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            with pytest.raises(Exception, match="could not create unique index"):
                await conn.execute(
                    text("CREATE UNIQUE INDEX CONCURRENTLY ix_customers_traits ON customers ((1))")
                )
        await upgrade_async(url)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT c.relname, i.indisvalid, am.amname FROM pg_index i"
                        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
                        " WHERE c.relname IN ('ix_customers_traits', 'ix_messages_journey',"
                        " 'ix_segment_memberships_open') ORDER BY 1"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("ix_customers_traits", True, "gin"),
        ("ix_messages_journey", True, "btree"),
        ("ix_segment_memberships_open", True, "btree"),
    ]


async def test_writes_to_customers_go_on_while_the_read_indexes_build(empty_database):
    """A transaction that wrote a customer is open when the build of the traits index starts, so the
    build waits for it either way. A plain CREATE INDEX waits in the lock queue for a SHARE lock, and
    every later write to customers queues behind it (here: lock_timeout); CONCURRENTLY holds only SHARE
    UPDATE EXCLUSIVE while it waits, which writes do not conflict with."""
    url = empty_database
    await _postgres_only(url)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0030_customers_email_prefix")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as open_writer, engine.connect() as watcher:
            await open_writer.begin()
            await open_writer.execute(text(_CUSTOMER), {"u": "open"})
            migration = asyncio.create_task(upgrade_async(url))
            try:
                for _ in range(300):  # until the build waits for the open transaction
                    waiting = await watcher.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock' AND query ILIKE '%ix_customers_traits%'"
                        )
                    )
                    await watcher.rollback()
                    if waiting or migration.done():
                        break
                    await asyncio.sleep(0.05)
                assert waiting, "the build of ix_customers_traits never waited for the open writer"
                async with engine.begin() as later_writer:
                    await later_writer.execute(text("SET LOCAL lock_timeout = '3s'"))
                    await later_writer.execute(text(_CUSTOMER), {"u": "during the build"})
            finally:
                await open_writer.commit()
                await migration
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM customers")) == 2
            assert await conn.scalar(
                text(
                    "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE c.relname = 'ix_customers_traits'"
                )
            )
    finally:
        await engine.dispose()


_PATH_INDEX = "ix_journey_steps_journey_path"


async def _path_index(engine) -> str | None:
    """How the database defines the steps' path index (PostgreSQL: valid ones only), or None."""
    async with engine.connect() as conn:
        if engine.dialect.name != "postgresql":
            return await conn.scalar(
                text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": _PATH_INDEX}
            )
        return await conn.scalar(
            text(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :n AND i.indisvalid"
            ),
            {"n": _PATH_INDEX},
        )


async def test_the_steps_path_index_holds_what_the_transitions_read_and_goes_down_and_up(empty_database):
    url = empty_database
    engine = create_async_engine(url)
    try:
        await upgrade_async(url)
        built = await _path_index(engine)
        assert "(journey_id, workflow_id, entered_at, id)" in " ".join(built.split()), built
        if url.startswith("postgresql"):  # the window reads the index alone
            assert built.endswith("INCLUDE (node_id, left_at, outcome)"), built
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0035_engagement_message_refs")
        assert await _path_index(engine) is None
        await upgrade_async(url)
        assert await _path_index(engine) == built
    finally:
        await engine.dispose()


async def test_a_steps_path_index_left_invalid_by_an_interrupted_build_is_rebuilt(empty_database):
    url = empty_database
    await _postgres_only(url)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0035_engagement_message_refs")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(_CUSTOMER), {"u": "a"})
            await conn.execute(
                text(
                    "INSERT INTO journeys (id, name, status, draft, created_at, updated_at)"
                    " VALUES ('j', 'J', 'published', '{}', now(), now())"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO journey_steps (workflow_id, journey_id, version, customer_id, node_id,"
                    " visit, entered_at) SELECT 'w', 'j', 1, id, n, 1, now() FROM customers,"
                    " (VALUES ('start'), ('hello')) AS nodes (n)"
                )
            )
        async with engine.connect() as conn:  # a failed concurrent build leaves it INVALID
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            with pytest.raises(Exception, match="could not create unique index"):
                await conn.execute(
                    text(f"CREATE UNIQUE INDEX CONCURRENTLY {_PATH_INDEX} ON journey_steps ((1))")
                )
        assert await _path_index(engine) is None

        await upgrade_async(url)

        assert (await _path_index(engine)).endswith("INCLUDE (node_id, left_at, outcome)")
    finally:
        await engine.dispose()


_BACKFILL_INDEX = "ix_events_track_name_id"


async def _index_sql(engine, name: str) -> str | None:
    """How the database defines index ``name`` (PostgreSQL: valid ones only), or None."""
    async with engine.connect() as conn:
        if engine.dialect.name != "postgresql":
            return await conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": name})
        return await conn.scalar(
            text(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :n AND i.indisvalid"
            ),
            {"n": name},
        )


async def test_the_loyalty_back_fill_index_holds_track_events_by_name_and_goes_down_and_up(empty_database):
    url = empty_database
    engine = create_async_engine(url)
    try:
        await upgrade_async(url)
        built = " ".join((await _index_sql(engine, _BACKFILL_INDEX)).split())
        where = re.sub(r"[()]|::text", "", built.split(" WHERE ", 1)[1])  # PostgreSQL adds casts
        assert "(name, id)" in built and where.replace('"', "") == "type = 'track'", built
        await asyncio.to_thread(command.downgrade, alembic_config(url), "0037_unsubscribe_mails")
        assert await _index_sql(engine, _BACKFILL_INDEX) is None
        await upgrade_async(url)
        assert " ".join((await _index_sql(engine, _BACKFILL_INDEX)).split()) == built
    finally:
        await engine.dispose()


async def test_two_migration_runs_at_once_take_turns_and_both_end_at_head(empty_database):
    """Replicas that each migrate on start: the second run waits for the first, then finds nothing
    to do, instead of creating the same tables beside it (or dropping an index it is building)."""
    url = empty_database
    await _postgres_only(url)
    # Processes of their own, as replicas are (Alembic's context is one per process).
    run = f"from runtime.migrate import upgrade; upgrade({url!r})"
    runs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", run, cwd=ROOT, stderr=PIPE)
        for _ in range(2)
    ]
    for process in runs:
        _, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()[-2000:]
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            heads = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            invalid = (
                await conn.execute(text("SELECT count(*) FROM pg_index WHERE NOT indisvalid"))
            ).scalar_one()
    finally:
        await engine.dispose()
    script_head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert heads == [script_head] and invalid == 0


# Each migration that adds a table or a column: gone after going down to the one before, back after up.
ADDED = {
    "unsubscribe_mails": "0036_journey_steps_path",
    "customer_user_aliases": "0038_events_track_name_id",
    "cases.opened_priority_rank": "0039_customer_user_aliases",
}


@pytest.mark.parametrize("added", list(ADDED))
async def test_a_table_or_column_a_migration_adds_goes_down_and_up(empty_database, added):
    url = empty_database
    engine = create_async_engine(url)

    def present(sync) -> bool:
        table, _, column = added.partition(".")
        if not column:
            return table in inspect(sync).get_table_names()
        return column in {c["name"] for c in inspect(sync).get_columns(table)}

    async def there() -> bool:
        async with engine.connect() as conn:
            return await conn.run_sync(present)

    try:
        await upgrade_async(url)
        assert await there()
        await asyncio.to_thread(command.downgrade, alembic_config(url), ADDED[added])
        assert not await there()
        await upgrade_async(url)
        assert await there()
    finally:
        await engine.dispose()
