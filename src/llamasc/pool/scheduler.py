"""The pool's decisions, as a pure state machine: events in, effect commands out.

No I/O, no asyncio, no clock: time is an argument. The pool's run loop feeds every event
here and performs the effects it gets back, so every decision (start, stop, grant, reject)
is taken where the state lives, never from a read made elsewhere.

Rules:

- A ready sidecar for the request's key serves it at once (the fast path), unless its model
  has ``concurrency`` requests in flight (the request waits, then ``concurrency_limit``) or
  the sidecar is draining (below). A retired sidecar (its model's file changed or went away)
  drains the same way.
- Concurrent first requests for one key start it once; all its waiters are granted when it is
  ready, or all rejected with the start error.
- Room is counted in resources (``admission``): one ``slots`` unit per live sidecar against
  ``max_sidecars``, and bytes per device against the memory budget. Starting, ready and
  stopping sidecars all hold theirs, since a stopping sidecar still holds its memory and its
  port; with ``overlap`` n > 0, up to n stopping sidecars hold no slot (``--overlap-swaps``).
- A key that cannot fit even alone (beside the pinned sidecars) is refused at once:
  ``insufficient_memory``.
- When there is no room, idle sidecars are stopped, least recently used first, until the
  newcomer fits (``eviction``). A busy sidecar is never stopped to make room: the newcomer
  waits, for at most ``queue_timeout`` seconds, then is rejected with ``"capacity"``.
  Waiting for a sidecar that is already starting is not bounded by the queue timeout.
- Waiters are served by priority (higher first), then in arrival order; while a model is
  loaded its requests go straight to it, so ABAB arrivals are served AABB.
- Starvation bound: a request for an unloaded model that has waited ``max_wait`` seconds
  (None: no bound) drains the busy sidecars in its way that have been ready ``min_resident``
  seconds: they take no new request, finish those in flight, and are stopped.
- Groups (llama-swap's): ``swap`` members stop each other, ``exclusive`` ones stop other
  groups' members unless those are ``persistent``. Pinned sidecars are never stopped for
  another one, nor by their TTL; others are stopped after ``ttl`` seconds idle.
- Only an explicit stop, its own exit or shutdown ends a sidecar that has requests in flight.
- A retired sidecar (its model's file changed or went away) finishes what it has in flight and
  then stops; meanwhile new requests for its key wait for its successor. A successor under
  another key (a reload changed the model's arguments) starts beside it: the retiring sidecar's
  room counts as taken until it exits, so idle sidecars make room rather than the successor
  waiting for the old sidecar's streams to end (unless a group rule says the two cannot run
  together).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from llamasc.pool.admission import (
    DEFAULT_PROFILE,
    SLOTS,
    Group,
    Ledger,
    Profile,
    Usage,
    add,
    charge,
    fits,
    insufficient_memory_message,
    too_big,
)
from llamasc.pool.effects import (
    Effect,
    Grant,
    Reject,
    RequestId,
    SidecarRecord,
    Start,
    Stop,
    StopReason,
    View,
    Waiter,
)
from llamasc.pool.eviction import SidecarState, conflicts
from llamasc.pool.plan import plan_room


class Scheduler:
    """Decides what the pool does. Every public method is an event and returns the effects."""

    def __init__(
        self,
        max_sidecars: int,
        queue_timeout: float,
        *,
        max_waiters: int = 512,
        overlap: int = 0,
        budget: Usage | None = None,
        max_wait: float | None = None,
        min_resident: float = 0.0,
        groups: Mapping[str, Group] | None = None,
    ) -> None:
        if max_sidecars < 1:
            raise ValueError("max_sidecars must be at least 1")
        if overlap < 0:
            raise ValueError("overlap must not be negative")
        self.max_sidecars = max_sidecars
        self.overlap = overlap
        self.queue_timeout = queue_timeout
        self.max_waiters = max_waiters
        self.max_wait = max_wait
        self.min_resident = min_resident
        self.memory_budget: dict[str, float] = dict(budget or {})
        self._budget = {**self.memory_budget, SLOTS: float(max_sidecars)}
        self.groups: dict[str, Group] = dict(groups or {})
        self._group_of = {m: g.name for g in self.groups.values() for m in g.members}
        self.shutting_down = False
        self._sidecars: dict[str, SidecarRecord] = {}
        # dicts keep insertion order: this one is the FIFO queue
        self._waiters: dict[RequestId, Waiter] = {}
        self._leases: dict[RequestId, tuple[str, int]] = {}
        self._model_load: Counter[str] = Counter()
        self._gen = 0
        self._seq = 0

    # ----------------------------------------------------------------- reads (display only)

    @property
    def sidecars(self) -> Mapping[str, SidecarRecord]:
        """Live sidecars by key. For display: never decide anything from this outside."""
        return MappingProxyType(self._sidecars)

    def waiting(self, key: str | None = None) -> int:
        """How many requests wait (for ``key``, or in total)."""
        if key is None:
            return len(self._waiters)
        return sum(1 for w in self._waiters.values() if w.key == key)

    def in_flight(self) -> int:
        """How many granted requests have not been released yet."""
        return len(self._leases)

    def held(self) -> dict[str, float]:
        """What the live sidecars hold per device (the larger of projected and measured)."""
        out = {d: 0.0 for d in self.memory_budget}
        for sc in self._sidecars.values():
            for d, v in self._charge(sc).items():
                if d != SLOTS:
                    out[d] = out.get(d, 0.0) + v
        return out

    def next_deadline(self, now: float | None = None) -> float | None:
        """When ``tick`` next has something to do, or None: the run loop's only timer.

        Queue timeouts always count; starvation, min-resident and TTL instants count when
        they are after ``now`` (before it, they were acted on when they passed).
        """
        times = [w.deadline for w in self._waiters.values() if not self._bound(w)]
        later: list[float] = []
        if self.max_wait is not None:
            room = [w for w in self._waiters.values() if w.key not in self._sidecars]
            later += [w.arrival + self.max_wait for w in room]
            if now is not None and any(w.arrival + self.max_wait <= now for w in room):
                later += [
                    sc.ready_at + self.min_resident
                    for sc in self._sidecars.values()
                    if sc.state is SidecarState.READY and not sc.draining
                ]
        for sc in self._sidecars.values():
            if self._ttl_applies(sc):
                later.append(sc.last_used + sc.profile.ttl)
        times += [t for t in later if now is None or t > now]
        return min(times, default=None)

    # ---------------------------------------------------------------------------- events

    def request(
        self, req_id: RequestId, key: str, now: float, profile: Profile | None = None
    ) -> list[Effect]:
        """A client wants the sidecar of ``key`` (``profile``: what it runs and needs)."""
        if req_id in self._waiters or req_id in self._leases:
            raise ValueError(f"request id {req_id!r} is already known")
        if self.shutting_down:
            return [Reject(req_id, "shutting_down")]
        sc = self._sidecars.get(key)
        if sc is not None and self._can_grant(sc):
            return [self._grant(req_id, sc, now)]
        profile = profile or DEFAULT_PROFILE
        if sc is None and self.memory_budget:
            pinned = [self._charge(p) for p in self._sidecars.values() if self._pinned(p)]
            found = too_big(profile, self.memory_budget, pinned)
            if found is not None:
                msg = insufficient_memory_message(profile.model or key, found)
                return [Reject(req_id, "insufficient_memory", detail=msg)]
        if len(self._waiters) >= self.max_waiters:
            return [Reject(req_id, "capacity", detail="queue_full")]
        self._seq += 1
        self._waiters[req_id] = Waiter(
            req_id, key, now + self.queue_timeout, now, self._seq, profile
        )
        return self._drain(now)

    def ready(self, key: str, now: float) -> list[Effect]:
        """The sidecar of ``key`` answers health checks: grant everyone waiting for it."""
        sc = self._sidecars.get(key)
        if sc is None or sc.state is not SidecarState.STARTING:
            return []  # stopped while starting: the Stop already decided its fate
        sc.state = SidecarState.READY
        sc.last_used = sc.ready_at = now
        # with no waiter left it may be the idle victim someone else is waiting for
        return self._drain(now)

    def measured(self, key: str, usage: Usage) -> list[Effect]:
        """What the ready sidecar of ``key`` really holds per device (RSS, driver's report)."""
        sc = self._sidecars.get(key)
        if sc is not None:
            sc.measured = {d: float(v) for d, v in usage.items()}
        return []

    def start_failed(self, key: str, error: BaseException | None, now: float) -> list[Effect]:
        """The sidecar of ``key`` did not become ready. Its slot is free again."""
        sc = self._sidecars.pop(key, None)
        if sc is None:
            return []
        effects: list[Effect] = []
        if sc.state is SidecarState.STARTING:
            effects = [Reject(w.req_id, "start_failed", error) for w in self._take_waiters(key)]
        # a start aborted by a Stop leaves its waiters queued: they get a fresh start
        return effects + self._drain(now)

    def exited(self, key: str, now: float) -> list[Effect]:
        """The sidecar of ``key`` died (or was found unhealthy) without being asked to stop."""
        sc = self._sidecars.get(key)
        if sc is not None and sc.state is SidecarState.STARTING:
            return self.start_failed(key, None, now)
        return self.stopped(key, now)

    def stopped(self, key: str, now: float) -> list[Effect]:
        """The sidecar of ``key`` is gone and its port is free."""
        if self._sidecars.pop(key, None) is None:
            return []
        return self._drain(now)

    def released(self, req_id: RequestId, now: float) -> list[Effect]:
        """A granted request finished, or a waiting one gave up. Idempotent."""
        if self._waiters.pop(req_id, None) is not None:
            return self._drain(now)
        lease = self._leases.pop(req_id, None)
        if lease is None:
            return []
        key, gen = lease
        sc = self._sidecars.get(key)
        if sc is None or sc.gen != gen:
            return []  # its sidecar is gone; a successor's count is not ours to touch
        sc.in_flight -= 1
        self._model_load[sc.profile.model] -= 1
        sc.last_used = now
        if self._waiters or (sc.draining and sc.in_flight == 0):
            return self._drain(now)
        return []

    def stop_requested(self, key: str, now: float) -> list[Effect]:
        """An operator (or the health check) wants the sidecar of ``key`` gone, busy or not."""
        sc = self._sidecars.get(key)
        if sc is None or sc.state is SidecarState.STOPPING:
            return []
        sc.state = SidecarState.STOPPING
        return [Stop(key, "requested")]

    def retire(self, key: str, now: float) -> list[Effect]:
        """The sidecar of ``key`` runs an outdated model: stop it now if idle (or starting),
        else once its requests in flight are done."""
        sc = self._sidecars.get(key)
        if sc is None or sc.state is SidecarState.STOPPING:
            return []
        if sc.state is SidecarState.STARTING or sc.in_flight == 0:
            sc.state = SidecarState.STOPPING
            return [Stop(key, "retired")]
        # takes nothing new; stopped by _drain once its last request ends
        sc.draining = sc.retiring = True
        return []

    def tick(self, now: float) -> list[Effect]:
        """Time passed: queue timeouts, TTLs, and the starvation bound."""
        expired = [w for w in self._waiters.values() if w.deadline <= now and not self._bound(w)]
        effects: list[Effect] = []
        for w in expired:
            del self._waiters[w.req_id]
            sc = self._sidecars.get(w.key)
            limited = sc is not None and sc.state is SidecarState.READY and not sc.draining
            effects.append(Reject(w.req_id, "concurrency_limit" if limited else "capacity"))
        for sc in self._sidecars.values():
            expired_ttl = self._ttl_applies(sc) and now - sc.last_used >= sc.profile.ttl
            if expired_ttl and self.waiting(sc.key) == 0:
                sc.state = SidecarState.STOPPING
                effects.append(Stop(sc.key, "ttl"))
        return effects + self._drain(now)

    def shutdown(self, now: float) -> list[Effect]:
        """Stop everything; reject waiters now and every later request."""
        self.shutting_down = True
        effects: list[Effect] = [Reject(r, "shutting_down") for r in self._waiters]
        self._waiters.clear()
        for sc in self._sidecars.values():
            if sc.state is not SidecarState.STOPPING:
                sc.state = SidecarState.STOPPING
                effects.append(Stop(sc.key, "shutdown"))
        return effects

    # --------------------------------------------------------------------------- helpers

    def _grant(self, req_id: RequestId, sc: SidecarRecord, now: float) -> Grant:
        sc.in_flight += 1
        sc.last_used = now
        self._model_load[sc.profile.model] += 1
        self._leases[req_id] = (sc.key, sc.gen)
        return Grant(req_id, sc.key)

    def _can_grant(self, sc: SidecarRecord) -> bool:
        if sc.state is not SidecarState.READY or sc.draining:
            return False
        limit = sc.profile.concurrency
        return limit is None or self._model_load[sc.profile.model] < limit

    def _pinned(self, sc: SidecarRecord) -> bool:
        return sc.profile.pin and sc.state is not SidecarState.STOPPING

    def _ttl_applies(self, sc: SidecarRecord) -> bool:
        return (
            sc.profile.ttl > 0
            and not sc.profile.pin
            and sc.state is SidecarState.READY
            and not sc.draining
            and sc.in_flight == 0
        )

    def _charge(self, sc: SidecarRecord) -> dict[str, float]:
        return charge(sc.profile.need, sc.measured)

    def _take_waiters(self, key: str) -> Iterator[Waiter]:
        taken = [w for w in self._waiters.values() if w.key == key]
        for w in taken:
            del self._waiters[w.req_id]
        return iter(taken)

    def _bound(self, w: Waiter) -> bool:
        """Waiting on a start in progress rather than for room."""
        sc = self._sidecars.get(w.key)
        return sc is not None and sc.state is SidecarState.STARTING

    def _ordered(self) -> list[Waiter]:
        return sorted(self._waiters.values(), key=lambda w: (-w.profile.priority, w.seq))

    def _views(self) -> list[View]:
        counts: Counter[str] = Counter(w.key for w in self._waiters.values())
        return [
            View(
                key=sc.key,
                state=sc.state,
                in_flight=sc.in_flight,
                waiters=counts[sc.key],
                last_used=sc.last_used,
                model=sc.profile.model,
                group=self._group_of.get(sc.profile.model),
                pinned=sc.profile.pin,
                draining=sc.draining,
                ready_at=sc.ready_at,
            )
            for sc in self._sidecars.values()
        ]

    def _ledger(self, claimed: list[Usage]) -> Ledger:
        led = Ledger(self._budget)
        overlap_left = self.overlap
        for sc in self._sidecars.values():
            stopping = sc.state is SidecarState.STOPPING
            overlapped = stopping and overlap_left > 0
            overlap_left -= overlapped
            # a retiring sidecar's room is not "coming soon": its streams may run for minutes
            soon = stopping or (sc.draining and not sc.retiring)
            led.hold(self._charge(sc), stopping=soon, overlapped=overlapped)
        for c in claimed:
            led.claim(c)
        return led

    def _drain(self, now: float) -> list[Effect]:
        """Grant what ready sidecars can take, stop drained ones, then give room to waiters."""
        effects: list[Effect] = []
        for w in self._ordered():
            sc = self._sidecars.get(w.key)
            if sc is not None and self._can_grant(sc):
                del self._waiters[w.req_id]
                effects.append(self._grant(w.req_id, sc, now))
        for sc in self._sidecars.values():
            if sc.draining and sc.state is SidecarState.READY and sc.in_flight == 0:
                sc.state = SidecarState.STOPPING
                effects.append(Stop(sc.key, "retired" if sc.retiring else "drain"))
        if not self.shutting_down:
            effects += self._admit(now)
        return effects

    def _admit(self, now: float) -> list[Effect]:
        """Start waiters' keys into free room, stopping (or draining) what stands in the way.

        Served in priority, then arrival order; a waiter that can get no room stops the line
        (nobody behind it takes the room it is waiting for).
        """
        effects: list[Effect] = []
        claimed: list[Usage] = []
        handled: set[str] = set()
        for w in self._ordered():
            if w.key in self._sidecars or w.key in handled:
                continue
            handled.add(w.key)
            need = charge(w.profile.need)
            group = self._group_of.get(w.profile.model)
            views = self._views()
            must = conflicts(w.key, group, views, self.groups)
            if any(r.pinned for r in must):
                continue  # a pinned member of its group never leaves: it times out
            led = self._ledger(claimed)
            if not must and fits(led.now, need):
                effects.append(self._start(w))
                claimed.append(need)
                continue
            starving = self.max_wait is not None and now - w.arrival >= self.max_wait
            charges = {k: self._charge(sc) for k, sc in self._sidecars.items()}
            later = dict(led.later)
            for r in must:  # a retiring conflict must end first anyway: its room is ours
                if self._sidecars[r.key].retiring:
                    add(later, charges[r.key])
            plan = plan_room(
                w.key,
                group,
                views,
                must=must,
                groups=self.groups,
                charges=charges,
                later=later,
                need=need,
                starving=starving,
                now=now,
                min_resident=self.min_resident,
            )
            if plan is None:
                break
            stops, drains = plan
            conflicting = {r.key for r in must}
            # room is made for memory when a device (not the count of sidecars) is short
            room: StopReason = "memory" if _short_of_memory(led.now, need) else "evict"
            for r in stops:
                self._sidecars[r.key].state = SidecarState.STOPPING
                # a member of a conflicting group goes for the group; others make room
                effects.append(Stop(r.key, "group" if r.key in conflicting else room))
            for r in drains:
                self._sidecars[r.key].draining = True
            # an overlapped swap need not wait for the exit; a group's swap always does
            if not drains and not must and fits(self._ledger(claimed).now, need):
                effects.append(self._start(w))
            claimed.append(need)
        return effects

    def _start(self, w: Waiter) -> Start:
        self._gen += 1
        self._sidecars[w.key] = SidecarRecord(
            w.key, SidecarState.STARTING, self._gen, profile=w.profile
        )
        return Start(w.key)


def _short_of_memory(free: Usage, need: Usage) -> bool:
    """A bounded memory device (not the count of sidecars) has less free than ``need``."""
    return not fits({d: v for d, v in free.items() if d != SLOTS}, need)


__all__ = ["Scheduler"]  # its effects and records: llamasc.pool.effects
