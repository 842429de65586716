"""A config reload that changes a model's arguments gives it a new sidecar key: the scheduler
starts the successor at once beside the retiring child, which finishes its stream first.

The SIGHUP regression of the real-process test (tests/cli/test_cli_llamaswap.py) was a
request sent before the reload was applied: it was granted to the old key (the old child,
whose one slot was streaming). These pin down both halves, synchronously."""

from __future__ import annotations

from llamasc.pool.admission import Profile
from llamasc.pool.effects import Grant, Start, Stop
from llamasc.pool.scheduler import Scheduler

SMOL = Profile(model="smol", need={"host": 1e9})
GEMMA = Profile(model="gemma", need={"host": 1e9})


def _two_ready(s: Scheduler) -> None:
    for req, key, prof in ((1, "smol-old", SMOL), (2, "gemma", GEMMA)):
        assert s.request(req, key, 0.0, prof) == [Start(key)]
        assert s.ready(key, 0.5) == [Grant(req, key)]
        assert s.released(req, 1.0) == []
    assert s.request(3, "smol-old", 2.0, SMOL) == [Grant(3, "smol-old")]  # the long stream


def test_the_changed_models_new_key_starts_at_once_beside_the_retiring_child() -> None:
    s = Scheduler(3, 60.0, budget={"host": 8e9})
    _two_ready(s)
    assert s.retire("smol-old", 3.0) == []  # busy: it drains
    assert s.request(4, "smol-new", 3.1, SMOL) == [Start("smol-new")]
    assert s.ready("smol-new", 3.5) == [Grant(4, "smol-new")]
    assert s.released(4, 4.0) == []
    assert s.released(3, 9.0) == [Stop("smol-old", "retired")]
    assert set(s.sidecars) == {"smol-old", "gemma", "smol-new"}  # gemma was never touched


def test_a_request_resolved_before_the_reload_is_served_by_the_old_child() -> None:
    s = Scheduler(3, 60.0)
    _two_ready(s)
    assert s.request(4, "smol-old", 2.5, SMOL) == [Grant(4, "smol-old")]  # before retire
    assert s.retire("smol-old", 3.0) == []
    assert s.released(3, 9.0) == []  # request 4 still in flight on it
    assert s.released(4, 9.5) == [Stop("smol-old", "retired")]


def test_with_no_free_slot_the_successor_evicts_an_idle_child_not_the_retiring_one() -> None:
    s = Scheduler(2, 60.0)
    _two_ready(s)
    s.retire("smol-old", 3.0)
    # the retiring child holds its slot until it exits; gemma is idle, so it makes room
    assert s.request(4, "smol-new", 3.1, SMOL) == [Stop("gemma", "evict")]
    assert s.stopped("gemma", 3.2) == [Start("smol-new")]


def test_in_a_swap_group_the_successor_waits_for_the_retiring_child_and_evicts_nobody() -> None:
    from llamasc.pool.admission import Group

    s = Scheduler(2, 60.0, groups={"g": Group("g", frozenset({"smol"}), exclusive=False)})
    _two_ready(s)
    s.retire("smol-old", 3.0)
    assert s.request(4, "smol-new", 3.1, SMOL) == []  # swap: one smol child at a time
    assert s.released(3, 9.0) == [Stop("smol-old", "retired")]
    assert s.stopped("smol-old", 9.5) == [Start("smol-new")]
    assert "gemma" in s.sidecars
