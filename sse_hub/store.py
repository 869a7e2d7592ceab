"""The events table: appending with commit-ordered ids, and reading back in order.

How ids come to follow commit order
-----------------------------------
A plain sequence hands out ids at insert time, not at commit time: if the
transaction holding id 100 commits after the one holding 101, a reader may see
101 first, deliver it, and a client resuming from 101 never gets 100. We need
every reader to see the committed ids as a gap-free prefix, without letting one
producer wait for another producer's transaction, and without letting an
unrelated long transaction stall delivery.

So ids are not assigned by producers at all. There are two ways in:

* Producers inside their own transactions call ``sse_hub.publish()``, which
  inserts into ``sse_hub.outbox``. Outbox rows become visible only when (and
  if) their transaction commits; nothing is locked, so producers never wait for
  each other, and an open or rolled-back transaction simply contributes no rows.
  An ``AFTER INSERT`` trigger rings ``NOTIFY sse_hub_outbox`` at commit.
* The hub itself (HTTP ``POST /events``, ``sse-hub publish``) calls
  ``sse_hub.append()`` in a short transaction of its own.

``sse_hub.append()`` is the sequencer. It locks the single row of
``sse_hub.sequencer`` (``last_id``), moves every committed outbox row into
``sse_hub.events`` with ids ``last_id + 1, + 2, ...`` in outbox order, appends
the hub's own events after them, stores the new ``last_id`` and rings ``NOTIFY
sse_hub_events``. Sequencer transactions are therefore strictly one after the
other, and each assigns ids above everything committed before it: a reader's
snapshot always contains ids ``1..k`` of some ``k`` and nothing above. Ids are
dense (the counter rolls back with its transaction), and retention deletes from
the oldest id upwards, so what is retained is exactly ``[oldest, last_id]``.

The only waiting is between sequencer transactions, which are a few
milliseconds long and never wait on a producer; the hub batches concurrent HTTP
publishes into one sequencer call (group commit, see ``committer``).
``sse_hub.publish()`` returns nothing, because the id does not exist until
after the producer commits.

Events published one after another are delivered in that order on every path:
a publish that committed before another started is either already in
``events`` or visible in ``outbox`` to the next sequencer, which moves it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sse_hub.events import NewEvent, StoredEvent, TopicPattern


class Row(Protocol):
    """One result row (asyncpg's ``Record``), read by column name."""

    def __getitem__(self, column: str, /) -> Any: ...


class Database(Protocol):
    """What this module needs of a database handle; ``asyncpg.Connection`` and ``Pool`` fit.

    Every function here sends one statement: on a pool it runs on a connection
    acquired for that statement alone, so it sees one snapshot either way.
    """

    async def execute(self, query: str, *args: object) -> str: ...

    async def fetch(self, query: str, *args: object) -> list[Row]: ...

    async def fetchval(self, query: str, *args: object) -> Any:
        """The first column of the first row (its type is the query's)."""
        ...


@dataclass(frozen=True, slots=True)
class RelayRow:
    id: int
    topic: str
    event: str | None
    data: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Page:
    """One page of history for a catching-up subscriber, read in one snapshot."""

    oldest: int | None
    head: int
    events: list[StoredEvent]
    full: bool  # the page stopped at a limit: more may follow before ``upto``


DEFAULT_PAGE_BYTES = 1024 * 1024

_APPEND = "SELECT sse_hub.append($1::text[], $2::text[], $3::text[])"
_HEAD = "SELECT last_id FROM sse_hub.sequencer"
_OUTBOX_PENDING = "SELECT EXISTS (SELECT 1 FROM sse_hub.outbox)"
_AFTER = (
    "SELECT id, topic, event, data, created_at FROM sse_hub.events"
    " WHERE id > $1 ORDER BY id LIMIT $2"
)
_PRUNE = """
WITH batch AS (
    SELECT id, created_at FROM sse_hub.events ORDER BY id LIMIT $2
), cut AS (
    SELECT coalesce(
        (SELECT min(id) - 1 FROM batch WHERE created_at >= $1),
        (SELECT max(id) FROM batch)
    ) AS upto
)
DELETE FROM sse_hub.events WHERE id <= (SELECT upto FROM cut)
"""


_SEQUENCER_BUSY = -1  # what sse_hub.append() answers a drain when another holds the lock


async def drain_outbox(db: Database) -> bool:
    """Sequence the committed outbox rows; ``False`` when another session holds the sequencer.

    A drain never waits for the lock (migrations/0004): the holder sequences the rows.
    """
    first: int | None = await db.fetchval(_APPEND, [], [], [])
    return first != _SEQUENCER_BUSY


async def append(db: Database, events: Sequence[NewEvent]) -> list[int]:
    """Store ``events`` atomically and in order (moving the outbox first); their ids."""
    first: int | None = await db.fetchval(
        _APPEND,
        [event.topic for event in events],
        [event.event for event in events],
        [event.data for event in events],
    )
    if first is None or not events:
        return []  # with no events: a drain (see drain_outbox)
    return list(range(first, first + len(events)))


async def outbox_pending(db: Database) -> bool:
    return bool(await db.fetchval(_OUTBOX_PENDING))


async def head(db: Database) -> int:
    """The largest id ever assigned (0 on an empty database)."""
    value = await db.fetchval(_HEAD)
    return int(value)


async def fetch_after(db: Database, after: int, limit: int) -> list[RelayRow]:
    rows = await db.fetch(_AFTER, after, limit)
    return [RelayRow(r["id"], r["topic"], r["event"], r["data"], r["created_at"]) for r in rows]


_NEWEST = """
SELECT id, topic, event, data, created_at FROM (
    SELECT *, sum(octet_length(data)) OVER (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) AS running
    FROM (SELECT * FROM sse_hub.events WHERE id <= $1 ORDER BY id DESC LIMIT $2) AS newest
) AS counted
WHERE running <= $3
ORDER BY id
"""


async def fetch_newest(db: Database, upto: int, limit: int, max_bytes: int) -> list[RelayRow]:
    """The newest events with ``id <= upto``, in id order; ``limit`` and ``max_bytes`` of data."""
    rows = await db.fetch(_NEWEST, upto, limit, max_bytes)
    return [RelayRow(r["id"], r["topic"], r["event"], r["data"], r["created_at"]) for r in rows]


_COLUMNS = "id, topic, event, data"


class _Params:
    """A statement's values, each added with the placeholder (``$n``) that stands for it.

    Parts of a query built in different places then cannot give two values the
    same number, or a value a number the statement does not send.
    """

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: list[object] = []

    def add(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _matching_rows(
    patterns: tuple[TopicPattern, ...], params: _Params, *, after: str, upto: str, limit: str
) -> str:
    """A query for the first ``limit`` matching events with ``after < id <= upto``, by id.

    ``after``, ``upto`` and ``limit`` are placeholders already in ``params``;
    the patterns' values are added to it here.

    Exact topics read each topic's ``(topic, id)`` index in order and stop
    after ``limit`` rows. Anything else makes replaying a long history quadratic,
    because PostgreSQL 15 then reads and sorts every remaining row of the topic
    for each page: ``topic = ANY(...)`` cannot keep id order across the array,
    and even ``topic = $t AND id > $1`` gets a bitmap scan and a sort when the
    statistics predate the topic (a new topic with a burst of history). The row
    comparison on the index's own columns is estimated as wide, so the planner
    always walks the index and stops at the limit.
    Prefixes walk the primary key in id order; rows of an exact topic are left
    out there so that an event matching both is returned once.
    """
    in_range = f"id > {after} AND id <= {upto}"
    if any(pattern.is_all for pattern in patterns):
        return f"SELECT {_COLUMNS} FROM sse_hub.events WHERE {in_range} ORDER BY id LIMIT {limit}"
    exact = [p.text for p in patterns if p.prefix is None]
    prefixes = [p.prefix for p in patterns if p.prefix is not None]
    parts: list[str] = []
    exact_param = f"{params.add(exact)}::text[]"  # the prefix part needs it even when empty
    if exact:
        parts.append(
            f"SELECT ev.{_COLUMNS.replace(', ', ', ev.')}"
            f" FROM unnest({exact_param}) AS t(topic)"
            " CROSS JOIN LATERAL ("
            f"SELECT {_COLUMNS} FROM sse_hub.events"
            f" WHERE (topic, id) > (t.topic, {after}) AND (topic, id) <= (t.topic, {upto})"
            f" ORDER BY topic, id LIMIT {limit}"
            ") AS ev"
        )
    if prefixes:
        prefix_param = f"{params.add(prefixes)}::text[]"
        parts.append(
            f"(SELECT {_COLUMNS} FROM sse_hub.events WHERE {in_range}"
            f" AND topic <> ALL({exact_param})"
            f" AND EXISTS (SELECT 1 FROM unnest({prefix_param}) AS p(prefix)"
            " WHERE starts_with(topic, p.prefix) AND length(topic) > length(p.prefix))"
            f" ORDER BY id LIMIT {limit})"
        )
    union = " UNION ALL ".join(parts)
    return f"SELECT {_COLUMNS} FROM ({union}) AS m ORDER BY id LIMIT {limit}"


async def fetch_page(
    db: Database,
    patterns: tuple[TopicPattern, ...],
    *,
    after: int,
    upto: int,
    limit: int,
    max_bytes: int = DEFAULT_PAGE_BYTES,
) -> Page:
    """Matching events with ``after < id <= upto``, plus the retained range, in one snapshot.

    A page holds at most ``limit`` events and stops after the event that reaches
    ``max_bytes`` of data, so one page of large events cannot take much memory.
    """
    params = _Params()
    after_param, upto_param, limit_param = params.add(after), params.add(upto), params.add(limit)
    max_bytes_param = params.add(max_bytes)
    matching = _matching_rows(
        patterns, params, after=after_param, upto=upto_param, limit=limit_param
    )
    sql = f"""
        SELECT (SELECT min(id) FROM sse_hub.events) AS oldest,
               (SELECT last_id FROM sse_hub.sequencer) AS head,
               e.id, e.topic, e.event, e.data, e.running
        FROM (SELECT 1) AS one
        LEFT JOIN LATERAL (
            SELECT * FROM (
                SELECT id, topic, event, data,
                       sum(octet_length(data)) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING)
                           AS running
                FROM ({matching}) AS matching
            ) AS w
            WHERE running - octet_length(data) < {max_bytes_param}
        ) AS e ON TRUE
        ORDER BY e.id
    """
    rows = await db.fetch(sql, *params.values)
    first = rows[0]
    events = [
        StoredEvent(row["id"], row["topic"], row["event"], row["data"])
        for row in rows
        if row["id"] is not None
    ]
    full = len(events) == limit or (bool(events) and rows[-1]["running"] >= max_bytes)
    return Page(oldest=first["oldest"], head=int(first["head"]), events=events, full=full)


async def prune(db: Database, older_than: datetime, batch: int) -> int:
    """Delete up to ``batch`` of the oldest events created before ``older_than``.

    Stops at the first younger event so that what remains is always a suffix of
    the id range (the reset logic in ``replay`` relies on it).
    """
    status: str = await db.execute(_PRUNE, older_than, batch)
    return int(status.rsplit(" ", 1)[-1])
