"""The alert evaluator: pure functions from (rule condition, state, new points) to (state, transitions).

No database, no clock: times are integer µs since the Unix epoch (the shape
``sensors.hooks.SensorSeries`` carries), so the ingest writer, the sweep and the
backtest all run the same code, and tests are tables.

Semantics:

- A threshold condition *breaches* strictly beyond its level (above: v > threshold; below:
  v < threshold; outside: v < low or v > high) and *clears* at or back past its clear level
  (above: v <= clear; below: v >= clear; outside: clear_low <= v <= clear_high). Between the
  two (the hysteresis band) a firing alert keeps firing and an OK one stays OK.
- ``for_us``: a breach first makes the state *pending*; it fires once a breaching reading
  arrives ``for_us`` after the first one (or the sweep finds the time elapsed with no reading
  since, ``tick``). Any non-breaching reading while pending goes back to OK.
- ``clear_for_us``: a firing state resolves once clear readings have held that long; one
  non-clear reading restarts the wait.
- Readings are taken in device-time order, and a reading at or before the state's
  ``last_ts`` is ignored: a late or backfilled reading never flips the current state, and a
  redelivered one is never evaluated twice.
- ``no_data`` fires when ``tick`` finds a sensor silent for ``for_us`` and resolves on the
  next reading; ``device_offline`` follows the device's status (``device_status``), pending
  for ``for_us`` first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

Kind = Literal["above", "below", "outside", "no_data", "device_offline"]
Status = Literal["ok", "pending", "firing"]
TransitionKind = Literal["pending", "cancelled", "fired", "resolved"]

NEEDS_A_PERSON: Final = frozenset({"fired", "resolved"})
THRESHOLD_KINDS: Final = frozenset({"above", "below", "outside"})


@dataclass(frozen=True, slots=True)
class Condition:
    kind: Kind
    threshold: float | None = None
    threshold_high: float | None = None
    clear: float | None = None
    clear_high: float | None = None
    for_us: int = 0
    clear_for_us: int = 0


@dataclass(frozen=True, slots=True)
class State:
    status: Status = "ok"
    since: int | None = None
    last_ts: int | None = None
    pending_since: int | None = None
    clear_since: int | None = None
    current: float | None = None
    worst: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    kind: TransitionKind
    at: int
    value: float | None
    worst: float | None = None  # resolved: the episode's worst value


@dataclass(frozen=True, slots=True)
class Evaluation:
    state: State
    transitions: tuple[Transition, ...] = ()


def breaches(cond: Condition, value: float) -> bool:
    if cond.kind == "above":
        return value > _level(cond.threshold)
    if cond.kind == "below":
        return value < _level(cond.threshold)
    if cond.kind == "outside":
        return value < _level(cond.threshold) or value > _level(cond.threshold_high)
    return False


def clears(cond: Condition, value: float) -> bool:
    low = cond.clear if cond.clear is not None else cond.threshold
    if cond.kind == "above":
        return value <= _level(low)
    if cond.kind == "below":
        return value >= _level(low)
    if cond.kind == "outside":
        high = cond.clear_high if cond.clear_high is not None else cond.threshold_high
        return _level(low) <= value <= _level(high)
    return True


def badness(cond: Condition, value: float) -> float:
    """How far into alarm a value is: the worst value of an episode has the largest."""
    if cond.kind == "below":
        return -value
    if cond.kind == "outside":
        return max(_level(cond.threshold) - value, value - _level(cond.threshold_high))
    return value


def stays_ok(cond: Condition, values: Sequence[float]) -> bool:
    """True when no value breaches a threshold condition (False for the other kinds).

    From OK, ``evaluate_readings`` then makes no transition and changes nothing but ``last_ts``
    and ``current``: the ingest writer's fast path, one ``min``/``max`` over a sensor's new values.
    """
    if not values:
        return True
    if cond.kind == "above":
        return max(values) <= _level(cond.threshold)
    if cond.kind == "below":
        return min(values) >= _level(cond.threshold)
    if cond.kind == "outside":
        return _level(cond.threshold) <= min(values) and max(values) <= _level(cond.threshold_high)
    return False


def _level(value: float | None) -> float:
    if value is None:
        raise ValueError("a threshold condition needs its levels")
    return value


def evaluate_readings(cond: Condition, state: State, ts: Sequence[int], values: Sequence[float]) -> Evaluation:
    """Feed a sensor's new readings, ascending by ``ts``, through the condition."""
    transitions: list[Transition] = []
    for t, v in zip(ts, values, strict=True):
        if state.last_ts is not None and t <= state.last_ts:
            continue  # late, backfilled or already seen: never flips the state
        if cond.kind == "no_data":
            state = _data_arrived(state, t, v, transitions)
        elif cond.kind != "device_offline":
            state = _step(cond, state, t, v, transitions)
        state = replace(state, last_ts=t, current=v)
    return Evaluation(state, tuple(transitions))


def _step(cond: Condition, state: State, t: int, v: float, out: list[Transition]) -> State:
    if state.status == "firing":
        return _step_firing(cond, state, t, v, out)
    if not breaches(cond, v):
        if state.status == "pending":
            out.append(Transition("cancelled", t, v))
            return State("ok", since=t)
        return state
    start = state.pending_since if state.status == "pending" else t
    if start is None or t - start >= cond.for_us:
        out.append(Transition("fired", t, v))
        return State("firing", since=t, worst=_worse(cond, state.worst if state.status == "pending" else None, v))
    if state.status != "pending":
        out.append(Transition("pending", t, v))
        return State("pending", since=t, pending_since=t, worst=v)
    return replace(state, worst=_worse(cond, state.worst, v))


def _step_firing(cond: Condition, state: State, t: int, v: float, out: list[Transition]) -> State:
    worst = _worse(cond, state.worst, v)
    if not clears(cond, v):
        return replace(state, worst=worst, clear_since=None)
    clear_since = state.clear_since if state.clear_since is not None else t
    if t - clear_since >= cond.clear_for_us:
        out.append(Transition("resolved", max(t, state.since or t), v, worst))
        return State("ok", since=t)
    return replace(state, worst=worst, clear_since=clear_since)


def _worse(cond: Condition, worst: float | None, v: float) -> float:
    if worst is None or badness(cond, v) > badness(cond, worst):
        return v
    return worst


def _data_arrived(state: State, t: int, v: float, out: list[Transition]) -> State:
    if state.status == "firing":
        out.append(Transition("resolved", max(t, state.since or t), v, state.worst))
        return State("ok", since=t)
    return state


def device_status(cond: Condition, state: State, *, offline: bool, at: int) -> Evaluation:
    """A device-offline rule's state after its device is seen ``offline`` (or online) at ``at``."""
    if cond.kind != "device_offline":
        return Evaluation(state)
    if not offline:
        if state.status == "firing":
            return Evaluation(State("ok", since=at), (Transition("resolved", max(at, state.since or at), None),))
        if state.status == "pending":
            return Evaluation(State("ok", since=at), (Transition("cancelled", at, None),))
        return Evaluation(state)
    if state.status != "ok":
        return tick(cond, state, now=at)
    if cond.for_us <= 0:
        return Evaluation(State("firing", since=at), (Transition("fired", at, None),))
    return Evaluation(State("pending", since=at, pending_since=at), (Transition("pending", at, None),))


def tick(cond: Condition, state: State, *, now: int) -> Evaluation:
    """Transitions that time alone makes: a pending wait elapsed with no reading since, or silence."""
    if cond.kind == "no_data":
        silent_since = state.last_ts if state.last_ts is not None else state.since
        if state.status == "ok" and silent_since is not None and now - silent_since >= cond.for_us:
            return Evaluation(
                State("firing", since=now, last_ts=state.last_ts, current=state.current),
                (Transition("fired", now, state.current),),
            )
        return Evaluation(state)
    if state.status == "pending" and state.pending_since is not None and now - state.pending_since >= cond.for_us:
        fired = replace(state, status="firing", since=now, pending_since=None)
        return Evaluation(fired, (Transition("fired", now, state.current),))
    return Evaluation(state)
