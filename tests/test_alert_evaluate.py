"""The alert evaluator (alerts/evaluate.py) as pure functions: tables of readings in, states and transitions out."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alerts.evaluate import Condition, State, device_status, evaluate_readings, tick

MIN = 60_000_000  # one minute in µs

FROST = Condition("below", threshold=2.0, clear=3.0)
HEAT = Condition("above", threshold=30.0, clear=30.0)
BAND = Condition("outside", threshold=10.0, threshold_high=20.0, clear=11.0, clear_high=19.0)
DRY_FOR_10 = Condition("below", threshold=20.0, clear=20.0, for_us=10 * MIN)
CLEAR_FOR_5 = Condition("above", threshold=30.0, clear=28.0, clear_for_us=5 * MIN)


def run(cond: Condition, points: list[tuple[int, float]], state: State | None = None):
    ts = [t * MIN for t, _ in points]
    values = [v for _, v in points]
    result = evaluate_readings(cond, state or State(), ts, values)
    return result.state, [(tr.kind, tr.at // MIN) for tr in result.transitions]


@pytest.mark.parametrize(
    ("cond", "points", "status", "transitions"),
    [
        pytest.param(HEAT, [(0, 29.0), (1, 30.0)], "ok", [], id="at-the-threshold-is-not-above-it"),
        pytest.param(HEAT, [(0, 31.0)], "firing", [("fired", 0)], id="above-fires-at-once-without-for"),
        pytest.param(
            HEAT, [(0, 31.0), (1, 30.0)], "ok", [("fired", 0), ("resolved", 1)], id="default-clear-is-the-threshold"
        ),
        pytest.param(FROST, [(0, 1.5)], "firing", [("fired", 0)], id="below-fires"),
        pytest.param(FROST, [(0, 1.5), (1, 2.5)], "firing", [("fired", 0)], id="hysteresis-band-keeps-firing"),
        pytest.param(
            FROST, [(0, 1.5), (1, 2.5), (2, 3.0)], "ok", [("fired", 0), ("resolved", 2)], id="clears-at-clear-level"
        ),
        pytest.param(FROST, [(0, 2.5), (1, 2.9)], "ok", [], id="hysteresis-band-does-not-fire"),
        pytest.param(BAND, [(0, 15.0), (1, 9.0)], "firing", [("fired", 1)], id="below-the-band-fires"),
        pytest.param(
            BAND,
            [(0, 21.0), (1, 19.5), (2, 19.0)],
            "ok",
            [("fired", 0), ("resolved", 2)],
            id="band-clears-inside-clear-band",
        ),
        pytest.param(
            BAND, [(0, 21.0), (1, 10.5)], "firing", [("fired", 0)], id="swinging-across-the-band-stays-firing"
        ),
        pytest.param(DRY_FOR_10, [(0, 19.0)], "pending", [("pending", 0)], id="for-n-makes-a-breach-pending"),
        pytest.param(
            DRY_FOR_10,
            [(0, 19.0), (5, 18.0), (10, 18.5)],
            "firing",
            [("pending", 0), ("fired", 10)],
            id="pending-fires-after-n",
        ),
        pytest.param(
            DRY_FOR_10,
            [(0, 19.0), (5, 21.0), (10, 18.5)],
            "pending",
            [("pending", 0), ("cancelled", 5), ("pending", 10)],
            id="one-good-reading-restarts-the-wait",
        ),
        pytest.param(
            DRY_FOR_10,
            [(0, 19.0), (60, 19.0)],
            "firing",
            [("pending", 0), ("fired", 60)],
            id="a-gap-longer-than-n-fires-on-the-next-breach",
        ),
        pytest.param(CLEAR_FOR_5, [(0, 31.0), (1, 27.0), (3, 27.0)], "firing", [("fired", 0)], id="clear-for-m-waits"),
        pytest.param(
            CLEAR_FOR_5,
            [(0, 31.0), (1, 27.0), (6, 27.0)],
            "ok",
            [("fired", 0), ("resolved", 6)],
            id="clear-for-m-resolves",
        ),
        pytest.param(
            CLEAR_FOR_5,
            [(0, 31.0), (1, 27.0), (4, 29.0), (7, 27.0)],
            "firing",
            [("fired", 0)],
            id="a-non-clear-reading-restarts-clear-for",
        ),
    ],
)
def test_threshold_conditions(cond, points, status, transitions):
    state, seen = run(cond, points)
    assert state.status == status
    assert seen == transitions


def test_the_worst_value_of_an_episode_is_the_furthest_into_alarm():
    state, _ = run(FROST, [(0, 1.0), (1, -3.0), (2, 0.5)])
    assert state.worst == -3.0
    result = evaluate_readings(FROST, state, [3 * MIN], [5.0])
    assert [(t.kind, t.worst, t.value) for t in result.transitions] == [("resolved", -3.0, 5.0)]


def test_a_band_tracks_the_worst_on_either_side():
    state, _ = run(BAND, [(0, 21.0), (1, 5.0), (2, 24.0)])
    assert state.worst == 5.0


def test_late_readings_older_than_the_last_seen_do_not_flip_the_state():
    firing, _ = run(FROST, [(10, 1.0)])
    state, seen = run(FROST, [(5, 9.0), (10, 9.0)], state=firing)  # a backfilled recovery, and a repeat of t=10
    assert (state.status, seen, state.last_ts) == ("firing", [], 10 * MIN)


def test_a_redelivered_series_is_not_evaluated_twice():
    first, seen = run(HEAT, [(0, 31.0), (1, 25.0)])
    again, seen_again = run(HEAT, [(0, 31.0), (1, 25.0)], state=first)
    assert seen == [("fired", 0), ("resolved", 1)]
    assert (again, seen_again) == (first, [])


def test_a_rule_edited_while_firing_applies_its_new_clear_level_from_the_next_reading():
    firing, _ = run(HEAT, [(0, 31.0)])
    relaxed = replace(HEAT, threshold=35.0, clear=33.0)
    state, seen = run(relaxed, [(1, 32.0)], state=firing)
    assert (state.status, seen) == ("ok", [("resolved", 1)])


def test_tick_fires_a_pending_state_once_n_elapsed_without_readings():
    pending, _ = run(DRY_FOR_10, [(0, 19.0)])
    assert tick(DRY_FOR_10, pending, now=9 * MIN).state == pending
    fired = tick(DRY_FOR_10, pending, now=10 * MIN)
    assert fired.state.status == "firing"
    assert [(t.kind, t.at // MIN, t.value) for t in fired.transitions] == [("fired", 10, 19.0)]


def test_a_reading_before_the_sweep_fired_resolves_at_the_firing_time_not_before():
    pending, _ = run(DRY_FOR_10, [(0, 19.0)])
    fired = tick(DRY_FOR_10, pending, now=12 * MIN).state
    result = evaluate_readings(DRY_FOR_10, fired, [11 * MIN], [25.0])  # in transit while the sweep ran
    assert [(t.kind, t.at // MIN) for t in result.transitions] == [("resolved", 12)]


NO_DATA = Condition("no_data", for_us=30 * MIN)


def test_no_data_fires_after_the_silence_and_resolves_on_the_next_reading():
    seen, _ = run(NO_DATA, [(0, 20.0)])
    assert tick(NO_DATA, seen, now=29 * MIN).transitions == ()
    silent = tick(NO_DATA, seen, now=30 * MIN)
    assert silent.state.status == "firing"
    back, transitions = run(NO_DATA, [(31, 21.0)], state=silent.state)
    assert (back.status, transitions) == ("ok", [("resolved", 31)])


def test_no_data_counts_a_never_heard_sensor_from_when_its_state_began():
    fresh = State(since=0)
    assert tick(NO_DATA, fresh, now=30 * MIN).state.status == "firing"


OFFLINE = Condition("device_offline", for_us=5 * MIN)


def test_device_offline_is_pending_then_fires_then_resolves_when_online():
    went = device_status(OFFLINE, State(), offline=True, at=0)
    assert went.state.status == "pending"
    fired = tick(OFFLINE, went.state, now=5 * MIN)
    assert fired.state.status == "firing"
    back = device_status(OFFLINE, fired.state, offline=False, at=7 * MIN)
    assert (back.state.status, [t.kind for t in back.transitions]) == ("ok", ["resolved"])


def test_device_offline_without_a_wait_fires_at_once_and_ignores_readings():
    fired = device_status(replace(OFFLINE, for_us=0), State(), offline=True, at=0).state
    assert fired.status == "firing"
    assert evaluate_readings(OFFLINE, fired, [MIN], [1.0]).state.status == "firing"


def test_a_device_that_comes_back_while_pending_cancels():
    went = device_status(OFFLINE, State(), offline=True, at=0)
    back = device_status(OFFLINE, went.state, offline=False, at=MIN)
    assert (back.state.status, [t.kind for t in back.transitions]) == ("ok", ["cancelled"])
