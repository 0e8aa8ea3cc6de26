"""Batch reads and writes of alert states and episodes, and their outbox rows.

The ingest writer and the sweep both: load the states of a set of (rule, sensor) pairs
with one locking query, run the pure evaluator, then write back with one statement per
table (``unnest`` arrays): episodes opened, episodes updated or closed, states upserted,
and the transitions a person must hear about into the outbox, all in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from django.db import connection

from alerts.evaluate import Evaluation, State, Transition
from alerts.index import RuleEntry
from alerts.signals import AlertChange, LiveTransition
from outbox.services import OutboxItem, outbox_enqueue_many, outbox_enqueue_query

TRANSITION_TOPIC: Final = "alerts.transition"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)

Pair = tuple[int, int]
"""(rule id, sensor id): the key of one alert state."""


def to_us(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _ONE_US


def from_us(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + value * _ONE_US


@dataclass(slots=True)
class Episode:
    """An episode being written: an existing one (``id`` set) or one this batch opened."""

    rule_id: int
    sensor_id: int
    started_at: int
    id: int | None = None
    ended_at: int | None = None
    end_reason: str = ""
    first_value: float | None = None
    worst_value: float | None = None
    last_value: float | None = None
    notified: bool = False
    next_reminder_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Loaded:
    state: State
    episode: Episode | None


# Times travel as integer µs since the epoch (exact: PostgreSQL's own resolution), not as
# datetimes: parsing and quoting a datetime per column per state was a third of the ingest
# writer's time on a batch touching a thousand states (bench/alerts_bench.py).
_SELECT_STATES = """
SELECT st.rule_id, st.sensor_id, st.state,
       floor(extract(epoch FROM st.since) * 1000000)::bigint,
       floor(extract(epoch FROM st.last_ts) * 1000000)::bigint,
       floor(extract(epoch FROM st.pending_since) * 1000000)::bigint,
       floor(extract(epoch FROM st.clear_since) * 1000000)::bigint,
       st.current_value, st.worst_value, ep.id,
       floor(extract(epoch FROM ep.started_at) * 1000000)::bigint,
       ep.first_value, ep.worst_value, ep.notified_at IS NOT NULL
FROM alerts_alertstate st
LEFT JOIN alerts_alertepisode ep ON ep.id = st.episode_id AND ep.ended_at IS NULL
WHERE {where}
ORDER BY st.rule_id, st.sensor_id
FOR UPDATE OF st
"""
_PAIRS = "(st.rule_id, st.sensor_id) IN (SELECT * FROM unnest(%s::bigint[], %s::bigint[]))"
_LOAD_SQL = _SELECT_STATES.format(where=_PAIRS)
# The ingest writer's load: every state of the batch's sensors that is not OK (the partial
# index alertstate_active_idx: few, whatever the number of rules), plus the pairs it always
# needs (no-data and device-offline rules).
_LOAD_LIVE_SQL = _SELECT_STATES.format(where=f"(st.state <> 'ok' AND st.sensor_id = ANY(%s::bigint[])) OR {_PAIRS}")


def states_load(pairs: Iterable[Pair]) -> dict[Pair, Loaded]:
    """The stored states of ``pairs``, locked until the transaction ends (absent pairs are new: OK)."""
    rules, sensors = _columns(sorted(set(pairs)), 2)
    if not rules:
        return {}
    return _loaded(_LOAD_SQL, [rules, sensors])


def states_load_live(*, sensor_ids: Iterable[int], pairs: Iterable[Pair]) -> dict[Pair, Loaded]:
    """Every state of ``sensor_ids`` that is not OK, and the stored states of ``pairs``, locked until the end.

    A pair absent from the result is OK or has no row yet, which for a threshold rule is the
    same thing: its row holds nothing that evaluating from OK needs (see ``alerts.writer``).
    """
    rules, sensors = _columns(sorted(set(pairs)), 2)
    return _loaded(_LOAD_LIVE_SQL, [sorted(set(sensor_ids)), rules, sensors])


def _loaded(sql: str, params: list[list[int]]) -> dict[Pair, Loaded]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out: dict[Pair, Loaded] = {}
    for rule_id, sensor_id, status, since, last_ts, pending, clear, current, worst, ep_id, *ep in rows:
        state = State(status, since, last_ts, pending, clear, current, worst)
        episode = None
        if ep_id is not None:
            started, first, ep_worst, notified = ep
            episode = Episode(rule_id, sensor_id, started, ep_id, None, "", first, ep_worst, current)
            episode.notified = notified
        out[(rule_id, sensor_id)] = Loaded(state, episode)
    return out


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


@dataclass(frozen=True, slots=True)
class Notice:
    episode: Episode
    rule: RuleEntry
    device_id: int
    transition: str
    at: int
    value: float | None


@dataclass(slots=True)
class Changes:
    """What a batch of evaluations changed, written by ``save`` in a few statements."""

    now: datetime
    states: dict[Pair, tuple[State, Episode | None]] = field(default_factory=dict)
    stored: set[Pair] = field(default_factory=set)  # pairs whose state row exists (and ``states_load`` locked)
    opened: list[Episode] = field(default_factory=list)
    touched: dict[int, Episode] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    live: list[tuple[LiveTransition, Episode, RuleEntry, int, int, float | None]] = field(default_factory=list)

    def apply(self, rule: RuleEntry, pair: Pair, device_id: int, before: Loaded | None, result: Evaluation) -> None:
        """Record one pair's evaluation: its new state, the episodes it opened or closed, its notices."""
        episode = before.episode if before is not None else None
        for tr in result.transitions:
            episode = self._transition(rule, pair, device_id, episode, tr)
        if result.state.status == "firing" and episode is not None:
            episode.worst_value = result.state.worst
            episode.last_value = result.state.current
            if episode.id is not None:
                self.touched[episode.id] = episode
        self.states[pair] = (result.state, episode if result.state.status == "firing" else None)
        if before is not None:
            self.stored.add(pair)

    def _transition(
        self, rule: RuleEntry, pair: Pair, device_id: int, episode: Episode | None, tr: Transition
    ) -> Episode | None:
        if tr.kind == "fired":
            episode = Episode(pair[0], pair[1], tr.at, first_value=tr.value, worst_value=tr.value, last_value=tr.value)
            self.opened.append(episode)
            self.live.append(("fired", episode, rule, device_id, tr.at, tr.value))
            if not rule.muted(self.now):
                self._notify(episode, rule, device_id, tr)
            return episode
        if tr.kind == "resolved" and episode is not None:
            episode.ended_at, episode.end_reason = tr.at, "cleared"
            episode.worst_value = tr.worst if tr.worst is not None else episode.worst_value
            episode.last_value = tr.value if tr.value is not None else episode.last_value
            if episode.id is not None:
                self.touched[episode.id] = episode
            self.live.append(("resolved", episode, rule, device_id, tr.at, tr.value))
            if episode.notified:
                self.notices.append(Notice(episode, rule, device_id, "resolved", tr.at, tr.value))
            return None
        return episode

    def _notify(self, episode: Episode, rule: RuleEntry, device_id: int, tr: Transition) -> None:
        episode.notified = True
        if rule.remind_seconds:
            episode.next_reminder_at = self.now + timedelta(seconds=rule.remind_seconds)
        self.notices.append(Notice(episode, rule, device_id, tr.kind, tr.at, tr.value))

    def save(self) -> list[AlertChange]:
        """Write everything; returns the fired and resolved transitions for the live push after the commit."""
        _insert_episodes(self.opened, self.now)
        _update_episodes(list(self.touched.values()))
        _upsert_states(self.states, self.stored, self.now)
        outbox_enqueue_many(items=[outbox_item(n) for n in self.notices])
        return [self._change(*item) for item in self.live]

    def _change(
        self, kind: LiveTransition, e: Episode, rule: RuleEntry, device_id: int, at: int, value: float | None
    ) -> AlertChange:
        assert e.id is not None  # saved: inserted episodes got their ids
        started, moment = from_us(e.started_at) or _EPOCH, from_us(at) or _EPOCH
        return live_change(kind, rule, (e.id, e.sensor_id, device_id), started, moment, value, e.worst_value)


def live_change(
    kind: LiveTransition,
    rule: RuleEntry,
    ids: tuple[int, int, int],
    started_at: datetime,
    at: datetime,
    value: float | None,
    worst: float | None,
) -> AlertChange:
    """One transition as live clients see it; ``ids`` are (episode, sensor, device)."""
    episode_id, sensor_id, device_id = ids
    return AlertChange(
        farm_id=rule.farm_id,
        episode_id=episode_id,
        transition=kind,
        rule_id=rule.id,
        rule_name=rule.name,
        severity=rule.severity,
        sensor_id=sensor_id,
        device_id=device_id,
        started_at=started_at,
        at=at,
        value=value,
        worst=worst,
    )


_INSERT_EPISODES_SQL = """
INSERT INTO alerts_alertepisode (rule_id, sensor_id, started_at, ended_at, end_reason, first_value, worst_value,
    last_value, notified_at, reminders, next_reminder_at, ack_comment)
SELECT u.r, u.s, u.st, u.en, u.er, u.fv, u.wv, u.lv, u.na, 0, u.nr, ''
FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::float8[],
            %s::float8[], %s::float8[], %s::timestamptz[], %s::timestamptz[])
     AS u(r, s, st, en, er, fv, wv, lv, na, nr)
RETURNING id, rule_id, sensor_id, started_at
"""


def _insert_episodes(episodes: list[Episode], now: datetime) -> None:
    if not episodes:
        return
    rows = [
        (
            e.rule_id,
            e.sensor_id,
            from_us(e.started_at),
            from_us(e.ended_at),
            e.end_reason,
            e.first_value,
            e.worst_value,
            e.last_value,
            now if e.notified else None,
            e.next_reminder_at if e.ended_at is None else None,
        )
        for e in episodes
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_EPISODES_SQL, _columns(rows, 10))
        ids = {(r, s, to_us(st)): id_ for id_, r, s, st in cursor.fetchall()}
    for e in episodes:
        e.id = ids[(e.rule_id, e.sensor_id, e.started_at)]


_UPDATE_EPISODES_SQL = """
UPDATE alerts_alertepisode AS ep
SET ended_at = u.en, end_reason = u.er, worst_value = u.wv, last_value = u.lv
FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::float8[], %s::float8[]) AS u(id, en, er, wv, lv)
WHERE ep.id = u.id
"""


def _update_episodes(episodes: list[Episode]) -> None:
    if not episodes:
        return
    rows = [(e.id, from_us(e.ended_at), e.end_reason, e.worst_value, e.last_value) for e in episodes]
    with connection.cursor() as cursor:
        cursor.execute(_UPDATE_EPISODES_SQL, _columns(rows, 5))


# States already stored were locked by ``states_load`` (a rule's delete waits for us), so
# they need no lock on their rule: a plain update, which with alertstate's fillfactor stays
# a heap-only update when the status is unchanged.
_UPDATE_STATES_SQL = """
UPDATE alerts_alertstate AS st SET
    state = u.st, since = 'epoch'::timestamptz + u.si * interval '1 microsecond',
    last_ts = 'epoch'::timestamptz + u.lt * interval '1 microsecond',
    pending_since = 'epoch'::timestamptz + u.ps * interval '1 microsecond',
    clear_since = 'epoch'::timestamptz + u.cs * interval '1 microsecond',
    current_value = u.cv, worst_value = u.wv, episode_id = u.ep, updated_at = %s
FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::float8[], %s::float8[], %s::bigint[])
     AS u(r, s, st, si, lt, ps, cs, cv, wv, ep)
WHERE st.rule_id = u.r AND st.sensor_id = u.s
"""

# Rules deleted meanwhile are skipped (the join), so a rule deleted mid-batch never fails
# the batch on a foreign key; FOR KEY SHARE holds the rest until the commit.
_UPSERT_STATES_SQL = """
INSERT INTO alerts_alertstate (rule_id, sensor_id, state, since, last_ts, pending_since, clear_since,
    current_value, worst_value, episode_id, updated_at)
SELECT u.r, u.s, u.st, 'epoch'::timestamptz + u.si * interval '1 microsecond',
       'epoch'::timestamptz + u.lt * interval '1 microsecond',
       'epoch'::timestamptz + u.ps * interval '1 microsecond',
       'epoch'::timestamptz + u.cs * interval '1 microsecond', u.cv, u.wv, u.ep, %s
FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::float8[], %s::float8[], %s::bigint[])
     AS u(r, s, st, si, lt, ps, cs, cv, wv, ep)
JOIN alerts_alertrule AS rule ON rule.id = u.r
ORDER BY u.r, u.s
FOR KEY SHARE OF rule
ON CONFLICT (rule_id, sensor_id) DO UPDATE SET
    state = EXCLUDED.state, since = EXCLUDED.since, last_ts = EXCLUDED.last_ts,
    pending_since = EXCLUDED.pending_since, clear_since = EXCLUDED.clear_since,
    current_value = EXCLUDED.current_value, worst_value = EXCLUDED.worst_value,
    episode_id = EXCLUDED.episode_id, updated_at = EXCLUDED.updated_at
"""


def _upsert_states(states: dict[Pair, tuple[State, Episode | None]], stored: set[Pair], now: datetime) -> None:
    """Update the stored states (rows we hold locked) and insert the new ones, one statement each."""
    if not states:
        return
    rows: dict[bool, list[tuple[Any, ...]]] = {True: [], False: []}
    now_us = to_us(now)
    for pair, (s, episode) in sorted(states.items()):
        since = s.since if s.since is not None else now_us
        ep = episode.id if episode is not None else None
        row = (*pair, s.status, since, s.last_ts, s.pending_since, s.clear_since, s.current, s.worst, ep)
        rows[pair in stored].append(row)
    with connection.cursor() as cursor:
        for sql, batch in ((_UPDATE_STATES_SQL, rows[True]), (_UPSERT_STATES_SQL, rows[False])):
            if batch:
                cursor.execute(sql, [now, *_columns(batch, 10)])


def outbox_item(n: Notice, *, key: str | None = None, extra: dict[str, Any] | None = None) -> OutboxItem:
    """The outbox row of a transition; its key (episode and transition) makes it idempotent."""
    episode_id = n.episode.id
    return OutboxItem(
        topic=TRANSITION_TOPIC,
        key=key or f"{episode_id}:{n.transition}",
        payload={
            "transition": n.transition,
            "episode": episode_id,
            "rule": n.rule.id,
            "rule_name": n.rule.name,
            "farm": n.rule.farm_id,
            "sensor": n.episode.sensor_id,
            "device": n.device_id,
            "severity": n.rule.severity,
            "note": n.rule.note,
            "at": (from_us(n.at) or _EPOCH).isoformat(),
            "value": n.value,
            "worst": n.episode.worst_value,
            **(extra or {}),
        },
    )


# ``outbox_item``'s payload for the "fired" of many episodes at once, built by PostgreSQL
# (tests/test_alert_sweep.py checks the two agree): the sweep opens thousands in one
# statement, and their payloads never travel through Python.
_FIRED_ROWS_SQL = """
SELECT %(topic)s::text, jsonb_build_object(
           'transition', 'fired', 'episode', ep.id, 'rule', r.id, 'rule_name', r.name, 'farm', r.farm_id,
           'sensor', ep.sensor_id, 'device', s.device_id, 'severity', r.severity, 'note', r.note,
           'at', %(at)s::text, 'value', ep.first_value, 'worst', ep.worst_value),
       ep.id || ':fired'
FROM alerts_alertepisode ep
JOIN alerts_alertrule r ON r.id = ep.rule_id
JOIN sensors_sensor s ON s.id = ep.sensor_id
WHERE ep.id = ANY(%(episodes)s::bigint[])
"""


def fired_enqueue(*, episode_ids: Sequence[int], at: datetime) -> int:
    """The outbox rows of episodes that fired at ``at`` (their first value is the value), in one statement."""
    if not episode_ids:
        return 0
    params = {"topic": TRANSITION_TOPIC, "at": at.isoformat(), "episodes": list(episode_ids)}
    return outbox_enqueue_query(query=_FIRED_ROWS_SQL, params=params)
