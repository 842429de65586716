"""The pool of sidecars: decisions, eviction, ports, and the loop that acts.

Vocabulary: a *sidecar* is one llama-server the pool runs for one (model, flags) key
(:class:`Sidecar`). Its ``key`` identifies it; in JSON that is the field ``hash``, kept for
compatibility with llama-sidecar clients. :class:`SidecarInfo` is its snapshot and
:meth:`SidecarInfo.to_dict` the one JSON form of it; ``SidecarRecord`` (in ``effects``) is
the scheduler's plain-data view of it; ``Sidecars`` (in ``sidecars``) starts, stops and
watches them.

- ``scheduler``: a pure state machine; events in, effect commands out.
- ``eviction``: which idle sidecar to stop to make room (a plain function).
- ``ports``: free ports from PORT_RANGE, returned only after the sidecar exited.
- ``pool``: :class:`Pool`, the asyncio loop that runs the scheduler and performs its effects::

    async with Pool(PoolConfig(max_sidecars=2), catalog, binary, base_args) as pool:
        async with pool.lease("smollm2-135m", ["--top-k", "20"]) as lease:
            ...  # send requests to lease.base_url; lease.record(timings)
"""

from llamasc.pool.config import PoolConfig
from llamasc.pool.effects import Grant, Reject, Start, Stop
from llamasc.pool.eviction import SidecarState, choose_victim
from llamasc.pool.pool import Pool
from llamasc.pool.ports import DEFAULT_PORT_RANGE, PortAllocator, parse_port_range
from llamasc.pool.scheduler import Scheduler
from llamasc.pool.sidecar import Launcher, Lease, ServerHandle, Sidecar, SidecarInfo

# The old names, kept for one release: they go in the next one.
Child = Sidecar
ChildHandle = ServerHandle

__all__ = [
    "DEFAULT_PORT_RANGE",
    "Child",
    "ChildHandle",
    "Grant",
    "Launcher",
    "Lease",
    "Pool",
    "PoolConfig",
    "PortAllocator",
    "Reject",
    "Scheduler",
    "ServerHandle",
    "Sidecar",
    "SidecarInfo",
    "SidecarState",
    "Start",
    "Stop",
    "choose_victim",
    "parse_port_range",
]
