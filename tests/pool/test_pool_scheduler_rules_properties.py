"""Random event sequences against a scheduler using every rule at once: memory budgets,
pins, groups, per-model concurrency, TTLs, priorities and the starvation bound.

What must hold whatever happens: a busy sidecar is never stopped to make room (nor by its
TTL, nor while draining), pinned ones are never stopped for another, the memory of live
children never exceeds the budget, a model never has more requests in flight than its
concurrency, two members of a swap group are never loaded together, and every request is
answered exactly once in the end.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from test_pool_scheduler_properties import MAX, TIMEOUT, PoolModel

from llamasc.pool.admission import Group, Profile
from llamasc.pool.effects import Effect, Grant, Stop
from llamasc.pool.scheduler import Scheduler

BUDGET = 10
PROFILES = {
    "a": Profile("ma", need={"host": 4}, pin=True),
    "b": Profile("mb", need={"host": 5}, ttl=3.0),
    "c": Profile("mc", need={"host": 3}, ttl=5.0),
    "d": Profile("md", need={"host": 6}, concurrency=1, priority=2),
    "e": Profile("ma", need={"host": 2}),  # model ma with other flags: same model, no pin
}
GROUPS = {"g": Group("g", frozenset({"mb", "mc"}), swap=True, exclusive=False)}
RULE_KEYS = st.sampled_from(sorted(PROFILES))


class RulesPoolModel(PoolModel):
    def __init__(self) -> None:
        super().__init__()
        self.s = Scheduler(
            max_sidecars=MAX + 1,
            queue_timeout=TIMEOUT,
            max_waiters=8,
            budget={"host": BUDGET},
            max_wait=2.0,
            min_resident=1.0,
            groups=GROUPS,
        )

    def apply(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Stop) and e.reason in ("evict", "ttl", "drain"):
                sc = self.s.sidecars[e.key]
                assert sc.in_flight == 0, f"{e.reason} stopped {e.key} with requests in flight"
                assert not PROFILES[e.key].pin, f"{e.reason} stopped pinned {e.key}"
            if isinstance(e, Grant):
                assert not self.s.sidecars[e.key].draining or e.key in self.running
        super().apply(effects)

    @rule(key=RULE_KEYS, dt=st.floats(0, 4))
    def request(self, key: str, dt: float) -> None:
        self.now += dt
        req = self.next_req
        self.next_req += 1
        self.outcomes[req] = []
        self.waiting.add(req)
        self.apply(self.s.request(req, key, self.now, PROFILES[key]))

    @rule(dt=st.floats(0, 2 * TIMEOUT))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.apply(self.s.tick(self.now))
        deadline = self.s.next_deadline(self.now)
        assert deadline is None or deadline > self.now

    @invariant()
    def never_more_live_children_than_allowed(self) -> None:
        assert len(self.s.sidecars) <= MAX + 1

    @invariant()
    def memory_never_exceeds_the_budget(self) -> None:
        held = sum(PROFILES[k].need["host"] for k in self.s.sidecars)
        assert held <= BUDGET

    @invariant()
    def concurrency_is_respected(self) -> None:
        assert sum(1 for k in self.leases.values() if k == "d") <= 1

    @invariant()
    def swap_members_are_never_loaded_together(self) -> None:
        assert not {"b", "c"} <= (self.starting | self.running)


RulesPoolModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_scheduler_rules_properties = RulesPoolModel.TestCase
