"""The scheduler fed event sequences: no asyncio, no sleeps, only effects checked."""

from __future__ import annotations

import pytest

from llamasc.pool.effects import Grant, Reject, Start, Stop
from llamasc.pool.eviction import SidecarState
from llamasc.pool.scheduler import Scheduler


def ready_one(s: Scheduler, req: int, key: str, now: float = 0.0) -> None:
    """Bring ``key`` up through a first request ``req`` and leave that lease open."""
    assert s.request(req, key, now) == [Start(key)]
    assert s.ready(key, now) == [Grant(req, key)]


def test_ready_sidecar_is_reused_without_a_new_start() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    ready_one(s, 1, "a")
    assert s.request(2, "a", 1.0) == [Grant(2, "a")]
    assert s.sidecars["a"].in_flight == 2
    assert s.released(1, 2.0) == []
    assert s.request(3, "a", 3.0) == [Grant(3, "a")]


def test_concurrent_first_requests_start_the_key_once_and_all_are_granted_in_order() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    assert s.request(1, "a", 0) == [Start("a")]
    assert s.request(2, "a", 0) == []
    assert s.request(3, "a", 0) == []
    assert s.ready("a", 1) == [Grant(1, "a"), Grant(2, "a"), Grant(3, "a")]
    assert s.sidecars["a"].in_flight == 3


def test_no_more_than_max_sidecars_start() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    assert s.request(1, "a", 0) == [Start("a")]
    assert s.request(2, "b", 0) == [Start("b")]
    assert s.request(3, "c", 0) == []
    assert len(s.sidecars) == 2
    assert s.waiting("c") == 1


def test_least_recently_used_idle_sidecar_is_evicted_then_the_waiter_starts() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    ready_one(s, 1, "a")
    ready_one(s, 2, "b")
    s.released(2, 1.0)  # b used at 1
    s.released(1, 2.0)  # a used at 2: b is the least recently used
    assert s.request(3, "c", 3.0) == [Stop("b", "evict")]
    # b still holds memory and its port until it is gone: c may not start yet
    assert s.sidecars["b"].state is SidecarState.STOPPING
    assert s.stopped("b", 4.0) == [Start("c")]
    assert s.ready("c", 5.0) == [Grant(3, "c")]


def test_a_sidecar_with_requests_in_flight_is_never_the_victim() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    ready_one(s, 1, "a")
    ready_one(s, 2, "b", now=1.0)
    s.released(2, 5.0)  # b idle (more recent), a busy since 0
    assert s.request(3, "c", 6.0) == [Stop("b", "evict")]


def test_when_every_sidecar_is_busy_the_request_waits_until_one_drains() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    ready_one(s, 1, "a")
    ready_one(s, 2, "b")
    assert s.request(3, "c", 1.0) == []
    assert s.released(2, 2.0) == [Stop("b", "evict")]
    assert s.stopped("b", 3.0) == [Start("c")]


def test_waiters_for_room_are_served_first_come_first_served() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    ready_one(s, 1, "a")
    assert s.request(2, "b", 1.0) == []
    assert s.request(3, "c", 2.0) == []
    assert s.released(1, 3.0) == [Stop("a", "evict")]
    assert s.stopped("a", 4.0) == [Start("b")]
    assert s.ready("b", 5.0) == [Grant(2, "b")]
    assert s.released(2, 6.0) == [Stop("b", "evict")]
    assert s.stopped("b", 7.0) == [Start("c")]


def test_interleaved_models_are_collated_rather_than_thrashed() -> None:
    # A B C A B C arriving together with one slot: A, A then B, B then C, C (3 loads, not 6)
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    starts: list[str] = []
    effects = []
    for req, key in enumerate("abcabc"):
        effects += s.request(req, key, float(req))
    starts += [e.key for e in effects if isinstance(e, Start)]
    for key in "abc":
        granted = [e.req_id for e in s.ready(key, 10.0) if isinstance(e, Grant)]
        assert len(granted) == 2
        effects = []
        for req in granted:
            effects += s.released(req, 11.0)
        stops = [e for e in effects if isinstance(e, Stop)]
        if key != "c":
            assert stops == [Stop(key, "evict")]
            starts += [e.key for e in s.stopped(key, 12.0) if isinstance(e, Start)]
    assert starts == ["a", "b", "c"]


def test_waiting_for_room_ends_with_a_capacity_rejection_at_queue_timeout() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    ready_one(s, 1, "a")
    assert s.request(2, "b", 10.0) == []
    assert s.next_deadline() == 70.0
    assert s.tick(69.9) == []
    assert s.tick(70.0) == [Reject(2, "capacity")]
    assert s.next_deadline() is None
    assert s.waiting() == 0
    # the busy sidecar was never touched
    assert s.sidecars["a"].state is SidecarState.READY


def test_waiting_on_a_start_in_progress_is_not_cut_by_the_queue_timeout() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    assert s.request(1, "a", 0) == [Start("a")]
    assert s.next_deadline() is None
    assert s.tick(1000) == []
    assert s.ready("a", 1001) == [Grant(1, "a")]


def test_a_failed_start_rejects_every_waiter_of_its_key_and_frees_the_slot() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    err = RuntimeError("exit 1")
    assert s.request(1, "a", 0) == [Start("a")]
    assert s.request(2, "a", 0) == []
    assert s.request(3, "b", 0) == []
    assert s.start_failed("a", err, 1.0) == [
        Reject(1, "start_failed", err),
        Reject(2, "start_failed", err),
        Start("b"),
    ]
    assert "a" not in s.sidecars


def test_the_next_request_after_a_failed_start_tries_again() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    s.request(1, "a", 0)
    s.start_failed("a", None, 1.0)
    assert s.request(2, "a", 2.0) == [Start("a")]


def test_an_exited_sidecar_is_restarted_by_the_next_request() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    ready_one(s, 1, "a")
    assert s.exited("a", 1.0) == []
    assert s.request(2, "a", 2.0) == [Start("a")]
    assert s.ready("a", 3.0) == [Grant(2, "a")]
    # the lease on the dead child ends without touching its successor's count
    assert s.released(1, 4.0) == []
    assert s.sidecars["a"].in_flight == 1


def test_an_exit_frees_the_slot_for_a_waiter() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    ready_one(s, 1, "a")
    assert s.request(2, "b", 1.0) == []
    assert s.exited("a", 2.0) == [Start("b")]


def test_an_exit_while_starting_counts_as_a_failed_start() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    s.request(1, "a", 0)
    assert s.exited("a", 1.0) == [Reject(1, "start_failed", None)]


def test_stop_requested_stops_even_a_busy_sidecar_and_a_new_request_waits_for_the_stop() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    ready_one(s, 1, "a")
    assert s.stop_requested("a", 1.0) == [Stop("a", "requested")]
    assert s.stop_requested("a", 1.5) == []  # already on its way out
    assert s.request(2, "a", 2.0) == []
    assert s.stopped("a", 3.0) == [Start("a")]
    assert s.ready("a", 4.0) == [Grant(2, "a")]


def test_stop_requested_during_a_start_keeps_its_waiters_for_a_fresh_start() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    s.request(1, "a", 0)
    assert s.stop_requested("a", 1.0) == [Stop("a", "requested")]
    assert s.ready("a", 2.0) == []  # too late: the stop decided
    assert s.stopped("a", 3.0) == [Start("a")]
    assert s.ready("a", 4.0) == [Grant(1, "a")]


def test_stop_requested_for_an_unknown_key_does_nothing() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    assert s.stop_requested("nope", 0) == []


def test_a_waiter_that_gives_up_is_never_granted() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    s.request(1, "a", 0)
    s.request(2, "a", 0)
    assert s.released(2, 1.0) == []
    assert s.ready("a", 2.0) == [Grant(1, "a")]


def test_a_start_nobody_waits_for_anymore_becomes_an_eviction_candidate() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    s.request(1, "a", 0)
    s.released(1, 0.5)  # gave up while a was loading
    assert s.request(2, "b", 1.0) == []
    assert s.ready("a", 2.0) == [Stop("a", "evict")]


def test_release_is_idempotent() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    ready_one(s, 1, "a")
    s.request(2, "a", 0)
    s.released(1, 1.0)
    s.released(1, 1.0)
    assert s.sidecars["a"].in_flight == 1
    assert s.released(99, 1.0) == []


def test_shutdown_rejects_waiters_stops_everything_and_refuses_new_requests() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    ready_one(s, 1, "a")
    s.request(2, "b", 0)
    s.request(3, "c", 0)
    effects = s.shutdown(1.0)
    assert Reject(2, "shutting_down") in effects
    assert Reject(3, "shutting_down") in effects
    assert {e for e in effects if isinstance(e, Stop)} == {
        Stop("a", "shutdown"),
        Stop("b", "shutdown"),
    }
    assert s.request(4, "a", 2.0) == [Reject(4, "shutting_down")]
    assert s.stopped("a", 3.0) == []  # no restart while shutting down
    assert s.shutdown(4.0) == []  # idempotent


def test_a_full_queue_rejects_at_once() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, max_waiters=2)
    s.request(1, "a", 0)
    s.request(2, "b", 0)
    assert s.request(3, "c", 0) == [Reject(3, "capacity", detail="queue_full")]


def test_a_request_id_cannot_be_reused_while_alive() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    s.request(1, "a", 0)
    with pytest.raises(ValueError, match="already known"):
        s.request(1, "b", 0)


def test_max_sidecars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(max_sidecars=0, queue_timeout=60)


def test_two_waiters_for_room_each_get_their_own_victim() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    ready_one(s, 1, "a")
    ready_one(s, 2, "b")
    s.released(1, 1.0)
    s.released(2, 2.0)
    assert s.request(3, "c", 3.0) == [Stop("a", "evict")]
    # the second newcomer does not count on a's slot, which is promised to c
    assert s.request(4, "d", 4.0) == [Stop("b", "evict")]
    assert s.stopped("b", 5.0) == [Start("c")]
    assert s.stopped("a", 6.0) == [Start("d")]


# ------------------------------------------------------------------ overlapping swaps


def test_with_overlap_a_swap_starts_the_new_child_while_the_evicted_one_exits() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, overlap=1)
    ready_one(s, 1, "a")
    s.released(1, 1.0)
    assert s.request(2, "b", 2.0) == [Stop("a", "evict"), Start("b")]
    assert s.sidecars["a"].state is SidecarState.STOPPING
    assert s.ready("b", 3.0) == [Grant(2, "b")]
    assert s.stopped("a", 4.0) == []


def test_with_overlap_only_that_many_stopping_children_are_overlooked() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, overlap=1)
    ready_one(s, 1, "a")
    s.released(1, 1.0)
    assert s.request(2, "b", 2.0) == [Stop("a", "evict"), Start("b")]
    assert s.ready("b", 3.0) == [Grant(2, "b")]
    s.released(2, 4.0)
    # a is still exiting: evicting b now would leave two stopping children beside c
    assert s.request(3, "c", 5.0) == [Stop("b", "evict")]
    assert s.stopped("a", 6.0) == [Start("c")]
    assert s.stopped("b", 7.0) == []


def test_with_overlap_a_busy_sidecar_still_makes_the_newcomer_wait() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, overlap=1)
    ready_one(s, 1, "a")
    assert s.request(2, "b", 1.0) == []
    assert s.released(1, 2.0) == [Stop("a", "evict"), Start("b")]


def test_without_overlap_the_swap_waits_for_the_exit() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    ready_one(s, 1, "a")
    s.released(1, 1.0)
    assert s.request(2, "b", 2.0) == [Stop("a", "evict")]
    assert s.stopped("a", 3.0) == [Start("b")]


def test_overlap_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Scheduler(max_sidecars=1, queue_timeout=60, overlap=-1)
