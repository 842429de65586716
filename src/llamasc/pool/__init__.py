"""The pool of llama-server children: decisions, eviction, ports, and the loop that acts.

- ``scheduler``: a pure state machine; events in, effect commands out.
- ``eviction``: which idle sidecar to stop to make room (a plain function).
- ``ports``: free ports from PORT_RANGE, returned only after the child exited.
"""

from llamasc.pool.eviction import SidecarState, choose_victim
from llamasc.pool.ports import PortAllocator, parse_port_range
from llamasc.pool.scheduler import Grant, Reject, Scheduler, Start, Stop

__all__ = [
    "Grant",
    "PortAllocator",
    "Reject",
    "Scheduler",
    "SidecarState",
    "Start",
    "Stop",
    "choose_victim",
    "parse_port_range",
]
