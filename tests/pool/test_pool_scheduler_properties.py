"""Random event sequences against the scheduler, with a model of the pool that acts on it.

The machine plays the run loop: it performs each effect the way the pool would (a Start
becomes a pending start that later succeeds or fails, a Stop a pending stop, a Grant an open
lease) and checks, after every step, what must always hold.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llamasc.pool.effects import Effect, Grant, Reject, Start, Stop
from llamasc.pool.eviction import SidecarState
from llamasc.pool.scheduler import Scheduler

KEYS = st.sampled_from(["a", "b", "c", "d"])
MAX = 2
TIMEOUT = 10.0


class PoolModel(RuleBasedStateMachine):
    OVERLAP = 0  # stopping children that may still exit while their successors start

    def __init__(self) -> None:
        super().__init__()
        self.s = Scheduler(
            max_sidecars=MAX, queue_timeout=TIMEOUT, max_waiters=8, overlap=self.OVERLAP
        )
        self.now = 0.0
        self.next_req = 0
        self.starting: set[str] = set()  # Start sent, no answer yet
        self.stopping: set[str] = set()  # Stop sent, child not gone yet
        self.running: set[str] = set()  # ready and not asked to stop
        self.leases: dict[int, str] = {}
        self.waiting: set[int] = set()
        self.outcomes: dict[int, list[str]] = {}

    # -------------------------------------------------------------- the pool, acting

    def apply(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Start):
                assert e.key not in self.starting | self.stopping | self.running
                self.starting.add(e.key)
            elif isinstance(e, Stop):
                if e.reason == "evict":
                    sc = self.s.sidecars[e.key]
                    assert sc.in_flight == 0, f"evicted {e.key} with requests in flight"
                    assert self.s.waiting(e.key) == 0
                    assert e.key in self.running
                assert e.key not in self.stopping
                self.starting.discard(e.key)
                self.running.discard(e.key)
                self.stopping.add(e.key)
            elif isinstance(e, Grant):
                assert e.key in self.running, "granted a sidecar that is not ready"
                self.waiting.discard(e.req_id)
                self.leases[e.req_id] = e.key
                self.outcomes[e.req_id].append("granted")
            else:
                assert isinstance(e, Reject)
                self.waiting.discard(e.req_id)
                self.outcomes[e.req_id].append(e.reason)

    # --------------------------------------------------------------------- events

    @rule(key=KEYS, dt=st.floats(0, 4))
    def request(self, key: str, dt: float) -> None:
        self.now += dt
        req = self.next_req
        self.next_req += 1
        self.outcomes[req] = []
        self.waiting.add(req)
        self.apply(self.s.request(req, key, self.now))

    @precondition(lambda self: self.starting)
    @rule(data=st.data(), ok=st.booleans())
    def start_finishes(self, data: st.DataObject, ok: bool) -> None:
        key = data.draw(st.sampled_from(sorted(self.starting)))
        self.starting.discard(key)
        if ok:
            self.running.add(key)
            self.apply(self.s.ready(key, self.now))
        else:
            self.apply(self.s.start_failed(key, RuntimeError("boom"), self.now))

    @precondition(lambda self: self.stopping)
    @rule(data=st.data())
    def stop_finishes(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.stopping)))
        self.stopping.discard(key)
        self.apply(self.s.stopped(key, self.now))

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def child_crashes(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.running)))
        self.running.discard(key)
        self.apply(self.s.exited(key, self.now))

    @precondition(lambda self: self.leases or self.waiting)
    @rule(data=st.data(), dt=st.floats(0, 4))
    def client_done(self, data: st.DataObject, dt: float) -> None:
        self.now += dt
        req = data.draw(st.sampled_from(sorted(set(self.leases) | self.waiting)))
        if req in self.waiting:
            self.waiting.discard(req)
            self.outcomes[req].append("gave up")
        self.leases.pop(req, None)
        self.apply(self.s.released(req, self.now))

    @rule(key=KEYS)
    def operator_stops(self, key: str) -> None:
        self.apply(self.s.stop_requested(key, self.now))

    @rule(dt=st.floats(0, 2 * TIMEOUT))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.apply(self.s.tick(self.now))
        # nobody still waits for room past their deadline once time was told
        deadline = self.s.next_deadline()
        assert deadline is None or deadline > self.now

    # ----------------------------------------------------------------- invariants

    @invariant()
    def never_more_live_children_than_allowed(self) -> None:
        assert len(self.starting | self.running) <= MAX
        assert len(self.starting | self.stopping | self.running) <= MAX + self.OVERLAP
        assert len(self.s.sidecars) <= MAX + self.OVERLAP

    @invariant()
    def the_scheduler_agrees_with_the_world(self) -> None:
        for key, sc in self.s.sidecars.items():
            expected = {
                SidecarState.STARTING: self.starting,
                SidecarState.READY: self.running,
                SidecarState.STOPPING: self.stopping,
            }[sc.state]
            assert key in expected

    @invariant()
    def every_request_is_answered_at_most_once(self) -> None:
        for req, outs in self.outcomes.items():
            assert len(outs) <= 1, (req, outs)

    def teardown(self) -> None:
        # let the world run to quiescence: every start and stop completes, clients finish
        for _ in range(50):
            if not (self.starting or self.stopping or self.leases):
                break
            for key in sorted(self.starting):
                self.starting.discard(key)
                self.running.add(key)
                self.apply(self.s.ready(key, self.now))
            for key in sorted(self.stopping):
                self.stopping.discard(key)
                self.apply(self.s.stopped(key, self.now))
            for req in sorted(self.leases):
                del self.leases[req]
                self.apply(self.s.released(req, self.now))
            self.now += 2 * TIMEOUT
            self.apply(self.s.tick(self.now))
        assert not self.starting
        assert not self.stopping
        assert not self.leases
        unanswered = [r for r, outs in self.outcomes.items() if len(outs) != 1]
        assert not unanswered, {r: self.outcomes[r] for r in unanswered}


class OverlapPoolModel(PoolModel):
    OVERLAP = 1


PoolModel.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
OverlapPoolModel.TestCase.settings = PoolModel.TestCase.settings
test_scheduler_properties = PoolModel.TestCase
test_scheduler_properties_with_overlap = OverlapPoolModel.TestCase
