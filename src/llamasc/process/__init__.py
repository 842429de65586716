"""One llama-server child: spawn, readiness, health, stop, no orphans, output ring.

The pool decides what to run; this package runs one child safely::

    spec = LaunchSpec(binary, model_path, args=("-c", "512"), port=8501, label=key[:8])
    server = await LlamaServer.start(spec, ready_timeout=60)
    ...
    await server.stop(grace=5)

Children are scrubbed of llama.cpp's environment overrides (:func:`child_env`), lead their
own process group, die with the daemon (Linux parent-death signal, Windows Job Object),
and are recorded in a :class:`StateFile` so the next run can :func:`reap_leftovers`.
"""

from llamasc.process.environment import child_env, empty_config_home, is_scrubbed, llamasc_home
from llamasc.process.reaper import ChildRecord, StateFile, reap_leftovers
from llamasc.process.server import LlamaServer
from llamasc.process.spec import LaunchSpec, build_argv

__all__ = [
    "ChildRecord",
    "LaunchSpec",
    "LlamaServer",
    "StateFile",
    "build_argv",
    "child_env",
    "empty_config_home",
    "is_scrubbed",
    "llamasc_home",
    "reap_leftovers",
]
