"""The scheduling rules of issue 12, fed as event sequences: no asyncio, no sleeps.

Collation, the starvation bound, min-resident, priorities, TTL, pins, groups, per-model
concurrency and admission by memory on several devices.
"""

from __future__ import annotations

import pytest

from llamasc.pool.admission import Group, Profile, check_pins
from llamasc.pool.effects import Grant, Reject, Start, Stop
from llamasc.pool.eviction import SidecarState
from llamasc.pool.scheduler import Scheduler

GIB = 1024**3


def up(s: Scheduler, req: int, key: str, now: float = 0.0, p: Profile | None = None) -> None:
    """Bring ``key`` up through request ``req`` and leave that lease open."""
    assert s.request(req, key, now, p) == [Start(key)]
    assert s.ready(key, now) == [Grant(req, key)]


def P(model: str = "", **kw: object) -> Profile:
    return Profile(model=model, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------- collation and fairness


def test_abab_arrivals_are_served_aabb_while_the_loaded_model_is_busy() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, max_wait=10, min_resident=2)
    up(s, 1, "a")
    assert s.request(2, "b", 0.1) == []
    assert s.request(3, "a", 0.2) == [Grant(3, "a")]  # a is loaded: served before the swap
    assert s.request(4, "b", 0.3) == []
    s.released(1, 1.0)
    assert s.released(3, 1.1) == [Stop("a", "evict")]
    assert s.stopped("a", 1.2) == [Start("b")]
    assert s.ready("b", 1.3) == [Grant(2, "b"), Grant(4, "b")]


def test_a_waiter_for_an_unloaded_model_drains_the_busy_one_after_max_wait() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, max_wait=10, min_resident=2)
    up(s, 1, "a")
    assert s.request(2, "b", 1.0) == []
    assert s.next_deadline(1.0) == 11.0
    assert s.request(3, "a", 5.0) == [Grant(3, "a")]  # still before the bound
    assert s.tick(10.9) == []
    assert s.tick(11.0) == []  # a is now draining: busy, so not stopped yet
    assert s.sidecars["a"].draining
    assert s.request(4, "a", 11.5) == []  # a takes no new request
    assert s.released(1, 12.0) == []
    assert s.released(3, 13.0) == [Stop("a", "drain")]  # its last request finished
    assert s.stopped("a", 13.5) == [Start("b")]
    assert s.ready("b", 14.0) == [Grant(2, "b")]
    # a's own waiter now waits for b in turn, with its own bound (arrived at 11.5)
    assert s.waiting("a") == 1
    assert s.next_deadline(14.0) == 21.5


def test_agents_that_never_pause_cannot_starve_the_other_model() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, max_wait=10, min_resident=2)
    up(s, 1, "a")
    s.request(1000, "b", 0.5)
    now, req, granted_b = 0.0, 2, None
    while now < 60 and granted_b is None:  # a always has one request in flight
        now += 0.25
        effects = s.request(req, "a", now) + s.released(req - 1, now) + s.tick(now)
        for e in effects:
            if isinstance(e, Stop):
                effects += s.stopped(e.key, now)
            if isinstance(e, Start):
                effects += s.ready(e.key, now)
            if isinstance(e, Grant) and e.req_id == 1000:
                granted_b = now
        req += 1
    assert granted_b is not None
    assert granted_b <= 0.5 + 10 + 0.5


def test_min_resident_protects_a_freshly_swapped_in_model() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, max_wait=1, min_resident=5)
    up(s, 1, "a", now=0.0)  # ready at 0
    assert s.request(2, "b", 0.0) == []
    assert s.tick(1.0) == []  # b starved, but a is resident for 5 s
    assert not s.sidecars["a"].draining
    assert s.next_deadline(1.0) == 5.0
    assert s.tick(5.0) == []
    assert s.sidecars["a"].draining


def test_min_resident_does_not_keep_an_idle_model() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, max_wait=1, min_resident=100)
    up(s, 1, "a")
    s.released(1, 0.5)
    assert s.request(2, "b", 0.6) == [Stop("a", "evict")]


def test_without_a_bound_the_busy_model_is_never_drained() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    up(s, 1, "a")
    s.request(2, "b", 0.0)
    assert s.tick(59.0) == []
    assert not s.sidecars["a"].draining


def test_higher_priority_waiting_models_go_first() -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60)
    up(s, 1, "a")
    s.request(2, "b", 1.0, P("mb", priority=0))
    s.request(3, "c", 2.0, P("mc", priority=5))
    assert s.released(1, 3.0) == [Stop("a", "evict")]
    assert s.stopped("a", 3.5) == [Start("c")]


# ------------------------------------------------------------------------------- lifetimes


def test_ttl_stops_an_idle_sidecar_counted_from_its_last_request() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    up(s, 1, "a", p=P("ma", ttl=30))
    assert s.next_deadline(0.0) is None  # busy: no idle clock yet
    assert s.tick(100.0) == []
    s.released(1, 105.0)
    assert s.next_deadline(105.0) == 135.0
    assert s.tick(134.9) == []
    assert s.tick(135.0) == [Stop("a", "ttl")]


def test_ttl_zero_and_pins_never_expire() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    up(s, 1, "a", p=P("ma", ttl=0))
    up(s, 2, "b", p=P("mb", ttl=5, pin=True))
    s.released(1, 1.0)
    s.released(2, 1.0)
    assert s.next_deadline(1.0) is None
    assert s.tick(1e6) == []


def test_a_pinned_sidecar_is_never_evicted_for_another() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60)
    up(s, 1, "pinned", p=P("mp", pin=True))
    up(s, 2, "b", now=1.0)
    s.released(1, 2.0)  # the pinned one is the least recently used
    s.released(2, 3.0)
    assert s.request(3, "c", 4.0) == [Stop("b", "evict")]
    s.stopped("b", 5.0)
    s.released(3, 5.0)
    s2 = Scheduler(max_sidecars=1, queue_timeout=60, max_wait=0)
    up(s2, 1, "pinned", p=P("mp", pin=True))
    s2.released(1, 1.0)
    assert s2.request(2, "c", 2.0) == []
    assert s2.tick(62.0) == [Reject(2, "capacity")]
    assert s2.sidecars["pinned"].state is SidecarState.READY


def test_start_up_refuses_pins_that_do_not_fit() -> None:
    budget = {"cuda0": 10 * GIB}
    assert check_pins({"a": {"cuda0": 4 * GIB}, "b": {"cuda0": 5 * GIB}}, budget, 2) == []
    assert check_pins({"a": {}, "b": {}, "c": {}}, {}, 2) == [
        "3 pinned models (a, b, c) but MAX_SIDECARS is 2"
    ]
    assert check_pins({"a": {"cuda0": 6 * GIB}, "b": {"cuda0": 5 * GIB}}, budget, 2) == [
        "pinned models (a, b) need 11.0 GiB on cuda0; the budget is 10.0 GiB"
    ]


# ---------------------------------------------------------------------------------- groups


def groups(**kw: dict[str, object]) -> dict[str, Group]:
    return {
        name: Group(name, frozenset(spec.pop("members")), **spec)  # type: ignore[arg-type]
        for name, spec in kw.items()
    }


def test_swap_keeps_one_member_of_a_group_loaded() -> None:
    g = groups(pair={"members": ["ma", "mb"], "swap": True, "exclusive": False})
    s = Scheduler(max_sidecars=4, queue_timeout=60, groups=g)
    up(s, 1, "a", p=P("ma"))
    up(s, 2, "x", p=P("mx"))  # not in the group: untouched
    s.released(1, 1.0)
    assert s.request(3, "b", 2.0, P("mb")) == [Stop("a", "group")]
    assert s.stopped("a", 3.0) == [Start("b")]


def test_swap_waits_for_a_busy_member() -> None:
    g = groups(pair={"members": ["ma", "mb"], "exclusive": False})
    s = Scheduler(max_sidecars=4, queue_timeout=60, groups=g)
    up(s, 1, "a", p=P("ma"))
    assert s.request(2, "b", 1.0, P("mb")) == []
    assert s.released(1, 2.0) == [Stop("a", "group")]


def test_without_swap_members_live_side_by_side() -> None:
    g = groups(pair={"members": ["ma", "mb"], "swap": False, "exclusive": False})
    s = Scheduler(max_sidecars=4, queue_timeout=60, groups=g)
    up(s, 1, "a", p=P("ma"))
    assert s.request(2, "b", 1.0, P("mb")) == [Start("b")]


def test_exclusive_stops_other_groups_and_ungrouped_models_but_not_persistent_ones() -> None:
    g = groups(
        big={"members": ["mbig"], "exclusive": True},
        tools={"members": ["mt"], "persistent": True, "exclusive": False},
        other={"members": ["mo"], "exclusive": False},
    )
    s = Scheduler(max_sidecars=4, queue_timeout=60, groups=g)
    up(s, 1, "t", p=P("mt"))
    up(s, 2, "o", p=P("mo"))
    up(s, 3, "u", p=P("mu"))  # in no group
    for r in (1, 2, 3):
        s.released(r, 1.0)
    effects = s.request(4, "big", 2.0, P("mbig"))
    assert set(effects) == {Stop("o", "group"), Stop("u", "group")}
    # no member of another group is live any more: the stops in progress hold no claim by count
    starts = s.stopped("o", 3.0) + s.stopped("u", 3.0)
    assert starts == [Start("big")]
    assert s.sidecars["t"].state is SidecarState.READY


def test_a_non_exclusive_group_leaves_others_alone() -> None:
    g = groups(a={"members": ["ma"], "exclusive": False}, b={"members": ["mb"]})
    s = Scheduler(max_sidecars=4, queue_timeout=60, groups=g)
    up(s, 1, "b", p=P("mb"))
    assert s.request(2, "a", 1.0, P("ma")) == [Start("a")]


def test_persistent_members_are_not_evicted_for_memory_by_another_group() -> None:
    g = groups(keep={"members": ["mk"], "persistent": True, "exclusive": False})
    s = Scheduler(max_sidecars=4, queue_timeout=60, budget={"host": 10}, groups=g)
    up(s, 1, "k", p=P("mk", need={"host": 6}))
    s.released(1, 1.0)
    assert s.request(2, "x", 2.0, P("mx", need={"host": 6})) == []
    assert s.tick(62.0) == [Reject(2, "capacity")]


# ----------------------------------------------------------------------------- concurrency


def test_concurrency_bounds_requests_in_flight_for_a_model() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=30)
    p = P("m", concurrency=2)
    up(s, 1, "a", p=p)
    assert s.request(2, "a", 0.1, p) == [Grant(2, "a")]
    assert s.request(3, "a", 0.2, p) == []
    assert s.released(1, 1.0) == [Grant(3, "a")]
    assert s.request(4, "a", 2.0, p) == []
    assert s.next_deadline(2.0) == 32.0
    assert s.tick(32.0) == [Reject(4, "concurrency_limit")]


def test_concurrency_is_counted_per_model_across_flag_sets() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=30)
    up(s, 1, "a-plain", p=P("m", concurrency=1))
    assert s.request(2, "a-topk", 0.1, P("m", concurrency=1)) == [Start("a-topk")]
    assert s.ready("a-topk", 1.0) == []  # m already has its one request in flight
    assert s.released(1, 2.0) == [Grant(2, "a-topk")]


# ------------------------------------------------------------------------ memory admission


def test_memory_is_admitted_per_device() -> None:
    budget = {"cuda0": 10 * GIB, "cuda1": 10 * GIB, "host": 64 * GIB}
    s = Scheduler(max_sidecars=8, queue_timeout=60, budget=budget)
    a = P("a", need={"cuda0": 6 * GIB, "host": 1 * GIB})
    b = P("b", need={"cuda1": 6 * GIB, "host": 1 * GIB})
    c = P("c", need={"cuda0": 6 * GIB})
    up(s, 1, "a", p=a)
    up(s, 2, "b", p=b)  # another device: both fit
    s.released(1, 1.0)
    s.released(2, 2.0)  # b is the LRU overall, but only a frees cuda0
    assert s.request(3, "c", 3.0, c) == [Stop("a", "memory")]
    assert s.stopped("a", 4.0) == [Start("c")]
    assert s.held() == {"cuda0": 6 * GIB, "cuda1": 6 * GIB, "host": 1 * GIB}


def test_models_spread_over_the_same_rpc_worker_share_its_budget() -> None:
    w = "rpc:10.0.0.2:50052"
    s = Scheduler(max_sidecars=8, queue_timeout=60, budget={"host": 64 * GIB, w: 24 * GIB})
    a = P("a", need={w: 16 * GIB, "host": GIB})
    b = P("b", need={w: 16 * GIB, "host": GIB})
    c = P("c", need={"rpc:10.0.0.3:50052": 16 * GIB})  # a worker without a budget: no limit
    up(s, 1, "a", p=a)
    up(s, 2, "c", p=c)
    s.released(1, 1.0)
    s.released(2, 2.0)
    assert s.request(3, "b", 3.0, b) == [Stop("a", "memory")]  # only a frees the worker
    assert s.request(4, "x", 3.0, P("x", need={w: 30 * GIB}))[0] == Reject(
        4, "insufficient_memory", detail=f"x needs 30.0 GiB on {w}; the budget is 24.0 GiB"
    )


def test_several_idle_sidecars_are_stopped_until_the_newcomer_fits() -> None:
    s = Scheduler(max_sidecars=8, queue_timeout=60, budget={"host": 10})
    for i, k in enumerate("abc"):
        up(s, i, k, now=float(i), p=P(k, need={"host": 3}))
        s.released(i, float(i))
    assert s.request(9, "d", 5.0, P("d", need={"host": 7})) == [
        Stop("a", "memory"),
        Stop("b", "memory"),
    ]
    s.stopped("a", 6.0)
    assert s.stopped("b", 6.0) == [Start("d")]


def test_a_model_that_cannot_fit_alone_is_refused_at_once() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60, budget={"cuda0": 22 * GIB})
    big = P("gemma-27b", need={"cuda0": int(31.2 * GIB)})
    assert s.request(1, "k", 0.0, big) == [
        Reject(
            1,
            "insufficient_memory",
            detail="gemma-27b needs 31.2 GiB on cuda0; the budget is 22.0 GiB",
        )
    ]
    assert s.waiting() == 0
    assert not s.sidecars


def test_memory_held_by_pins_counts_against_fitting_alone() -> None:
    s = Scheduler(max_sidecars=2, queue_timeout=60, budget={"cuda0": 10 * GIB})
    up(s, 1, "p", p=P("p", need={"cuda0": 6 * GIB}, pin=True))
    (r,) = s.request(2, "x", 1.0, P("x", need={"cuda0": 5 * GIB}))
    assert isinstance(r, Reject)
    assert r.reason == "insufficient_memory"
    assert r.detail.endswith("6.0 GiB of it held by pinned models")


def test_a_busy_sidecar_is_never_stopped_for_memory() -> None:
    s = Scheduler(max_sidecars=4, queue_timeout=60, budget={"host": 10})
    up(s, 1, "a", p=P("a", need={"host": 6}))
    assert s.request(2, "b", 1.0, P("b", need={"host": 6})) == []
    assert s.released(1, 2.0) == [Stop("a", "memory")]


def test_the_measured_size_counts_when_larger_than_the_projection() -> None:
    s = Scheduler(max_sidecars=4, queue_timeout=60, budget={"host": 10})
    up(s, 1, "a", p=P("a", need={"host": 4}))
    s.released(1, 1.0)
    assert s.request(2, "b", 2.0, P("b", need={"host": 4})) == [Start("b")]
    s.ready("b", 2.0)
    s.released(2, 2.5)
    s.measured("a", {"host": 8})
    assert s.request(3, "c", 3.0, P("c", need={"host": 2})) == [Stop("a", "memory")]


def test_a_waiter_for_memory_keeps_its_claim_against_later_small_ones() -> None:
    s = Scheduler(max_sidecars=4, queue_timeout=60, budget={"host": 10})
    up(s, 1, "a", p=P("a", need={"host": 6}))
    assert s.request(2, "b", 1.0, P("b", need={"host": 8})) == []  # waits for busy a
    assert s.request(3, "c", 2.0, P("c", need={"host": 3})) == []  # would fit, but b first
    assert s.released(1, 3.0) == [Stop("a", "memory")]
    assert s.stopped("a", 4.0) == [Start("b")]


@pytest.mark.parametrize("overlap", [0, 1])
def test_a_stopping_child_still_holds_its_memory_even_with_overlap(overlap: int) -> None:
    s = Scheduler(max_sidecars=1, queue_timeout=60, overlap=overlap, budget={"host": 10})
    up(s, 1, "a", p=P("a", need={"host": 6}))
    s.released(1, 1.0)
    assert s.request(2, "b", 2.0, P("b", need={"host": 6})) == [Stop("a", "memory")]
    assert s.stopped("a", 3.0) == [Start("b")]
