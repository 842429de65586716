"""One llama-server child: spawn, readiness, health, stop, no orphans, output ring.

The pool decides what to run; this package runs one child safely::

    spec = LaunchSpec(binary, model_path, args=("-c", "512"), port=8501, label=key[:8])
    server = await LlamaServer.start(spec, ready_timeout=60)
    ...
    await server.stop(grace=5)

Children are scrubbed of llama.cpp's environment overrides (:func:`child_env`), lead their
own process group, die with the daemon (Linux parent-death signal, Windows Job Object),
and are recorded in a :class:`StateFile` so the next run can :func:`reap_leftovers`.
The readiness rule (:mod:`~llamasc.process.readiness`), the free-port pick and lost-port
retry (:mod:`~llamasc.process.ports`) and the :class:`Launcher`/:class:`ServerHandle`
protocol serve every llama-server llamasc runs: the daemon's, ``llamasc.load``'s and the
bench's, local or remote (``llamasc.remote`` adds only how to reach another machine).
"""

from llamasc.process.environment import child_env, empty_config_home, is_scrubbed, llamasc_home
from llamasc.process.launcher import Launcher, ServerHandle
from llamasc.process.reaper import ChildRecord, StateFile, reap_leftovers
from llamasc.process.server import LlamaServer
from llamasc.process.spec import LaunchSpec, build_argv

__all__ = [
    "ChildRecord",
    "LaunchSpec",
    "Launcher",
    "LlamaServer",
    "ServerHandle",
    "StateFile",
    "build_argv",
    "child_env",
    "empty_config_home",
    "is_scrubbed",
    "llamasc_home",
    "reap_leftovers",
]
