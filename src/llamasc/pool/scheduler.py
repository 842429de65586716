"""The pool's decisions, as a pure state machine: events in, effect commands out.

No I/O, no asyncio, no clock: time is an argument. The pool's run loop feeds every event
here and performs the effects it gets back, so every decision (start, stop, grant, reject)
is taken where the state lives, never from a read made elsewhere.

Rules:

- A ready sidecar for the request's key serves it at once (the fast path).
- Concurrent first requests for one key start it once; all its waiters are granted when it is
  ready, or all rejected with the start error.
- At most ``max_sidecars`` children are live; starting, ready and stopping all count, since a
  stopping child still holds its memory and its port. With ``overlap`` n > 0, up to n stopping
  children do not count: a swap starts the new child at once while the evicted one exits, at
  the price of both holding memory for that moment (opt-in: ``--overlap-swaps``).
- When full, the least recently used sidecar with nothing in flight and nobody waiting is
  stopped to make room (``eviction.choose_victim``). A busy sidecar is never stopped to make
  room: the newcomer waits, first come first served, for at most ``queue_timeout`` seconds,
  then is rejected with ``"capacity"``. Waiting for a sidecar that is already starting is not
  bounded by the queue timeout: the start has its own readiness timeout.
- Only an explicit stop, a child's exit or shutdown ends a sidecar that has requests in flight.
- A retired sidecar (its model's file changed or went away) finishes what it has in flight and
  then stops; meanwhile new requests for its key wait for its successor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeAlias

from llamasc.pool.eviction import SidecarState, choose_victim

RequestId: TypeAlias = int
StopReason: TypeAlias = Literal["evict", "requested", "shutdown", "retired"]
RejectReason: TypeAlias = Literal["capacity", "start_failed", "shutting_down"]


@dataclass(frozen=True, slots=True)
class Start:
    """Spawn a child for ``key``; answer with ``ready`` or ``start_failed``."""

    key: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the child of ``key`` (or abort its start); answer with ``stopped``."""

    key: str
    reason: StopReason


@dataclass(frozen=True, slots=True)
class Grant:
    """Request ``req_id`` may use the ready sidecar of ``key``; answer later with ``released``."""

    req_id: RequestId
    key: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Request ``req_id`` will not be served. ``error`` is the start error for start_failed;
    ``detail`` is ``"queue_full"`` when a capacity rejection came without any wait."""

    req_id: RequestId
    reason: RejectReason
    error: BaseException | None = None
    detail: str = ""


Effect: TypeAlias = Start | Stop | Grant | Reject


@dataclass(slots=True)
class Sidecar:
    """The scheduler's record of one live child. ``gen`` tells instances of a key apart."""

    key: str
    state: SidecarState
    gen: int
    in_flight: int = 0
    last_used: float = 0.0
    retiring: bool = False  # stop once idle; grant nothing new


@dataclass(frozen=True, slots=True)
class _Waiter:
    req_id: RequestId
    key: str
    deadline: float


@dataclass(frozen=True, slots=True)
class _View:
    """A sidecar as eviction sees it (satisfies ``eviction.Candidate``)."""

    key: str
    state: SidecarState
    in_flight: int
    waiters: int
    last_used: float


class Scheduler:
    """Decides what the pool does. Every public method is an event and returns the effects."""

    def __init__(
        self,
        max_sidecars: int,
        queue_timeout: float,
        *,
        max_waiters: int = 512,
        overlap: int = 0,
    ) -> None:
        if max_sidecars < 1:
            raise ValueError("max_sidecars must be at least 1")
        if overlap < 0:
            raise ValueError("overlap must not be negative")
        self.max_sidecars = max_sidecars
        self.overlap = overlap
        self.queue_timeout = queue_timeout
        self.max_waiters = max_waiters
        self.shutting_down = False
        self._sidecars: dict[str, Sidecar] = {}
        # dicts keep insertion order: this one is the FIFO queue
        self._waiters: dict[RequestId, _Waiter] = {}
        self._leases: dict[RequestId, tuple[str, int]] = {}
        self._gen = 0

    # ----------------------------------------------------------------- reads (display only)

    @property
    def sidecars(self) -> Mapping[str, Sidecar]:
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

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do, or None: the run loop's only timer."""
        deadlines = [w.deadline for w in self._waiters.values() if not self._bound(w)]
        return min(deadlines, default=None)

    # ---------------------------------------------------------------------------- events

    def request(self, req_id: RequestId, key: str, now: float) -> list[Effect]:
        """A client wants the sidecar of ``key``."""
        if req_id in self._waiters or req_id in self._leases:
            raise ValueError(f"request id {req_id!r} is already known")
        if self.shutting_down:
            return [Reject(req_id, "shutting_down")]
        sc = self._sidecars.get(key)
        if sc is not None and sc.state is SidecarState.READY and not sc.retiring:
            return [self._grant(req_id, sc, now)]
        if len(self._waiters) >= self.max_waiters:
            return [Reject(req_id, "capacity", detail="queue_full")]
        self._waiters[req_id] = _Waiter(req_id, key, now + self.queue_timeout)
        return self._drain()

    def ready(self, key: str, now: float) -> list[Effect]:
        """The child of ``key`` answers health checks: grant everyone waiting for it."""
        sc = self._sidecars.get(key)
        if sc is None or sc.state is not SidecarState.STARTING:
            return []  # stopped while starting: the Stop already decided its fate
        sc.state = SidecarState.READY
        sc.last_used = now
        effects: list[Effect] = [self._grant(w.req_id, sc, now) for w in self._take_waiters(key)]
        # with no waiter left it may be the idle victim someone else is waiting for
        return effects + self._drain()

    def start_failed(self, key: str, error: BaseException | None, now: float) -> list[Effect]:
        """The child of ``key`` did not become ready. Its slot is free again."""
        sc = self._sidecars.pop(key, None)
        if sc is None:
            return []
        effects: list[Effect] = []
        if sc.state is SidecarState.STARTING:
            effects = [Reject(w.req_id, "start_failed", error) for w in self._take_waiters(key)]
        # a start aborted by a Stop leaves its waiters queued: they get a fresh start
        return effects + self._drain()

    def exited(self, key: str, now: float) -> list[Effect]:
        """The child of ``key`` died (or was found unhealthy) without being asked to stop."""
        sc = self._sidecars.get(key)
        if sc is not None and sc.state is SidecarState.STARTING:
            return self.start_failed(key, None, now)
        return self.stopped(key, now)

    def stopped(self, key: str, now: float) -> list[Effect]:
        """The child of ``key`` is gone and its port is free."""
        if self._sidecars.pop(key, None) is None:
            return []
        return self._drain()

    def released(self, req_id: RequestId, now: float) -> list[Effect]:
        """A granted request finished, or a waiting one gave up. Idempotent."""
        if self._waiters.pop(req_id, None) is not None:
            return self._drain()
        lease = self._leases.pop(req_id, None)
        if lease is None:
            return []
        key, gen = lease
        sc = self._sidecars.get(key)
        if sc is None or sc.gen != gen:
            return []  # its child is gone; a successor's count is not ours to touch
        sc.in_flight -= 1
        sc.last_used = now
        if sc.in_flight == 0 and sc.retiring and sc.state is SidecarState.READY:
            sc.state = SidecarState.STOPPING
            return [Stop(key, "retired")]
        if sc.in_flight == 0 and self._waiters:
            return self._drain()
        return []

    def stop_requested(self, key: str, now: float) -> list[Effect]:
        """An operator (or the health check) wants the child of ``key`` gone, busy or not."""
        sc = self._sidecars.get(key)
        if sc is None or sc.state is SidecarState.STOPPING:
            return []
        sc.state = SidecarState.STOPPING
        return [Stop(key, "requested")]

    def retire(self, key: str, now: float) -> list[Effect]:
        """The child of ``key`` runs an outdated model: stop it now if idle (or starting),
        else once its requests in flight are done."""
        sc = self._sidecars.get(key)
        if sc is None or sc.state is SidecarState.STOPPING:
            return []
        if sc.state is SidecarState.STARTING or sc.in_flight == 0:
            sc.state = SidecarState.STOPPING
            return [Stop(key, "retired")]
        sc.retiring = True
        return []

    def tick(self, now: float) -> list[Effect]:
        """Time passed: reject waiters that waited ``queue_timeout`` for room in vain."""
        expired = [w for w in self._waiters.values() if w.deadline <= now and not self._bound(w)]
        for w in expired:
            del self._waiters[w.req_id]
        return [Reject(w.req_id, "capacity") for w in expired]

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

    def _grant(self, req_id: RequestId, sc: Sidecar, now: float) -> Grant:
        sc.in_flight += 1
        sc.last_used = now
        self._leases[req_id] = (sc.key, sc.gen)
        return Grant(req_id, sc.key)

    def _take_waiters(self, key: str) -> Iterator[_Waiter]:
        taken = [w for w in self._waiters.values() if w.key == key]
        for w in taken:
            del self._waiters[w.req_id]
        return iter(taken)

    def _bound(self, w: _Waiter) -> bool:
        """Waiting on a start in progress rather than for room."""
        sc = self._sidecars.get(w.key)
        return sc is not None and sc.state is SidecarState.STARTING

    def _views(self) -> list[_View]:
        counts: dict[str, int] = {}
        for w in self._waiters.values():
            counts[w.key] = counts.get(w.key, 0) + 1
        return [
            _View(sc.key, sc.state, sc.in_flight, counts.get(sc.key, 0), sc.last_used)
            for sc in self._sidecars.values()
        ]

    def _drain(self) -> list[Effect]:
        """Give room to waiters in arrival order: start into free slots, evict idle ones.

        ``headroom`` is the slots not held by a starting or ready child: free now, or held by a
        stopping one that will free it soon. Each slot still on its way out is promised to the
        next waiter instead of evicting yet another sidecar.
        """
        effects: list[Effect] = []
        live = sum(1 for sc in self._sidecars.values() if sc.state is not SidecarState.STOPPING)
        stopping = len(self._sidecars) - live
        promised = 0
        served: set[str] = set()
        for w in self._waiters.values():
            # a key with a live sidecar is starting (waiters join it) or stopping (they wait
            # for the stop, then are served here); a key already handled needs no 2nd slot
            if w.key in self._sidecars or w.key in served:
                continue
            served.add(w.key)
            if self._free(live, stopping) == 0:
                if self.max_sidecars - live - promised > 0:
                    promised += 1  # a stopping child's slot is this waiter's
                    continue
                victim = choose_victim(w.key, self._views())
                if victim is None:
                    break  # no room for this waiter, so none for anyone behind it either
                self._sidecars[victim].state = SidecarState.STOPPING
                effects.append(Stop(victim, "evict"))
                live, stopping = live - 1, stopping + 1
                if self._free(live, stopping) == 0:
                    promised += 1  # it waits for its victim to exit
                    continue
            self._gen += 1
            self._sidecars[w.key] = Sidecar(w.key, SidecarState.STARTING, self._gen)
            effects.append(Start(w.key))
            live += 1
        return effects

    def _free(self, live: int, stopping: int) -> int:
        """Slots a start may take now: ``overlap`` stopping children do not hold theirs."""
        return max(0, self.max_sidecars - live - max(0, stopping - self.overlap))


__all__ = [
    "Effect",
    "Grant",
    "Reject",
    "RejectReason",
    "RequestId",
    "Scheduler",
    "Sidecar",
    "Start",
    "Stop",
    "StopReason",
]
