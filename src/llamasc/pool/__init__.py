"""The pool of llama-server children: decisions, eviction, ports, and the loop that acts.

- ``scheduler``: a pure state machine; events in, effect commands out.
- ``eviction``: which idle sidecar to stop to make room (a plain function).
- ``ports``: free ports from PORT_RANGE, returned only after the child exited.
- ``pool``: :class:`Pool`, the asyncio loop that runs the scheduler and performs its effects::

    async with Pool(PoolConfig(max_sidecars=2), catalog, binary, base_args) as pool:
        async with pool.lease("smollm2-135m", ["--top-k", "20"]) as lease:
            ...  # send requests to lease.base_url; lease.record(timings)
"""

from llamasc.pool.child import ChildHandle, Launcher, Lease, SidecarInfo
from llamasc.pool.config import PoolConfig
from llamasc.pool.eviction import SidecarState, choose_victim
from llamasc.pool.pool import Pool
from llamasc.pool.ports import DEFAULT_PORT_RANGE, PortAllocator, parse_port_range
from llamasc.pool.scheduler import Grant, Reject, Scheduler, Start, Stop

__all__ = [
    "DEFAULT_PORT_RANGE",
    "ChildHandle",
    "Grant",
    "Launcher",
    "Lease",
    "Pool",
    "PoolConfig",
    "PortAllocator",
    "Reject",
    "Scheduler",
    "SidecarInfo",
    "SidecarState",
    "Start",
    "Stop",
    "choose_victim",
    "parse_port_range",
]
