"""``llamasc bench`` as one call: options in, a finished (or resumed) sweep out.

Order matters for the user: everything that can be checked on this machine (arms, prompts,
options) is checked before connecting; everything about the host (config, model files, the
binary's build) before the first server starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llamasc.bench.arms import Arm, build_arms
from llamasc.bench.events import Event, Prepared
from llamasc.bench.llamaswap import SwapConfig, parse_llama_swap
from llamasc.bench.models import BenchModel, parse_model_option
from llamasc.bench.prompts import Prompt, load_prompts
from llamasc.bench.records import ResultStore
from llamasc.bench.sweep import SweepConfig, SweepSummary, run_sweep
from llamasc.errors import ConfigError
from llamasc.remote.launch import ENV_NAME, HostLauncher
from llamasc.remote.ssh import SSHOptions

log = logging.getLogger(__name__)

REMOTE_PREFIX = "remote:"


@dataclass(frozen=True)
class BenchOptions:
    """Everything ``llamasc bench`` accepts (see the CLI for the user-facing help)."""

    host: str = "localhost"
    output: Path = Path("bench-results.jsonl")
    from_llama_swap: str | None = None
    model_options: Sequence[str] = ()
    models: Sequence[str] = ()
    arm_options: Sequence[str] = ()
    arms: Sequence[str] = ()
    ctx_size: int = 32768
    parallel: int = 1
    llama_server: str | None = None
    prompts: Path | None = None
    categories: Sequence[str] = ()
    reps: int = 3
    max_tokens: int = 256
    seed: int = 42
    temperature: float = 0.0
    fresh: bool = False
    retry_unsupported: bool = False
    start_timeout: float = 600.0
    request_timeout: float = 600.0
    remote_dir: str | None = None
    ssh: SSHOptions | None = None
    keep_env: Sequence[str] = ()


@dataclass
class BenchOutcome:
    """What happened: the sweep summary and what was done to the results file."""

    output: Path
    summary: SweepSummary
    moved_aside: Path | None = None
    models: list[BenchModel] = field(default_factory=list)
    arms: list[Arm] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    host_os: str = ""
    skipped_models: dict[str, str] = field(default_factory=dict)


def _check_numbers(opts: BenchOptions) -> None:
    for name, value, low in (
        ("--reps", opts.reps, 1),
        ("--max-tokens", opts.max_tokens, 1),
        ("--ctx-size", opts.ctx_size, 64),
        ("--parallel", opts.parallel, 1),
    ):
        if value < low:
            raise ConfigError(f"{name} must be at least {low}, got {value}")
    if not 0.0 <= opts.temperature <= 5.0:
        raise ConfigError(f"--temperature must be within 0..5, got {opts.temperature}")
    for name in opts.keep_env:
        if not ENV_NAME.match(name):
            raise ConfigError(f"--keep-env takes a variable name, got {name!r}")


def open_launcher(opts: BenchOptions) -> HostLauncher:
    """The local launcher for ``localhost``, else an SSH connection probed for its OS."""
    from llamasc.remote.local import LocalLauncher
    from llamasc.remote.probe import LOCAL_HOSTS, launcher_for
    from llamasc.remote.ssh import SSHTransport

    if opts.host in LOCAL_HOSTS:
        return LocalLauncher()
    transport = SSHTransport(opts.ssh or SSHOptions(host=opts.host))
    transport.connect()
    try:
        return launcher_for(transport, remote_dir=opts.remote_dir)
    except BaseException:
        transport.close()
        raise


def _read_swap_config(spec: str, launcher: HostLauncher) -> SwapConfig:
    """Read the config here or (``remote:PATH``) on the host. ``${env.NAME}`` comes from the
    host's environment either way: that is where llama-swap would expand it."""
    if spec.startswith(REMOTE_PREFIX):
        path = spec[len(REMOTE_PREFIX) :]
        text, where = launcher.read_text(path), f"{launcher.host}:{path}"
    else:
        local = Path(spec).expanduser()
        try:
            text = local.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ConfigError(f"cannot read {local}: {exc.strerror or exc}") from None
        where = str(local)
    environ = launcher.environ() if "${env." in text else {}
    return parse_llama_swap(
        text, source=where, environ=environ, windows=launcher.os_name == "windows"
    )


def resolve_models(
    opts: BenchOptions, launcher: HostLauncher
) -> tuple[list[BenchModel], dict[str, str]]:
    """The models to sweep, and the config's models that cannot be benched (id -> why).

    ``--models`` picks by id (or llama-swap alias) among the config's and ``--model`` ones.
    """
    extra = [parse_model_option(o) for o in opts.model_options]
    by_id: dict[str, BenchModel] = {}
    for m in extra:
        if m.id in by_id:
            raise ConfigError(f"--model {m.id!r} is given twice")
        by_id[m.id] = m
    config = _read_swap_config(opts.from_llama_swap, launcher) if opts.from_llama_swap else None
    skipped: dict[str, str] = dict(config.problems) if config else {}
    if opts.models:
        models = [
            by_id[name] if name in by_id else _select_one(config, name) for name in opts.models
        ]
        models = list({m.id: m for m in models}.values())
        skipped = {}
    else:
        models = (config.select() if config and config.models else []) + extra
    if not models:
        if config is not None:
            config.select()  # raises, listing why each model cannot be benched
        raise ConfigError("no models: give --from-llama-swap CONFIG or --model ID=PATH")
    missing = [f"{m.id}: {m.path}" for m in models if not launcher.path_exists(m.path)]
    if missing:
        raise ConfigError(f"model file(s) not found on {launcher.host}", details=missing)
    return models, skipped


def _select_one(config: SwapConfig | None, name: str) -> BenchModel:
    if config is None:
        raise ConfigError(f"unknown model {name!r}: not given with --model ID=PATH")
    return config.select([name])[0]


def default_binary(opts: BenchOptions, launcher: HostLauncher) -> str:
    if opts.llama_server:
        return opts.llama_server
    if launcher.host == "localhost":
        from llamasc.config import find_llama_server

        return str(find_llama_server())
    return "llama-server"


def run_bench(
    opts: BenchOptions,
    *,
    on_event: Callable[[Event], None] | None = None,
    launcher: HostLauncher | None = None,
) -> BenchOutcome:
    """Run (or resume) a sweep as described by ``opts``."""
    _check_numbers(opts)
    arms = build_arms(opts.arm_options, opts.arms)
    prompts = load_prompts(opts.prompts, opts.categories)
    own = launcher is None
    launcher = launcher or open_launcher(opts)
    try:
        models, skipped = resolve_models(opts, launcher)
        binary = opts.llama_server
        config = SweepConfig(
            host=opts.host,
            models=models,
            arms=arms,
            prompts=prompts,
            binary=binary,
            default_binary=default_binary(opts, launcher),
            reps=opts.reps,
            max_tokens=opts.max_tokens,
            seed=opts.seed,
            temperature=opts.temperature,
            ctx_size=opts.ctx_size,
            parallel=opts.parallel,
            start_timeout=opts.start_timeout,
            request_timeout=opts.request_timeout,
            retry_unsupported=opts.retry_unsupported,
            keep_env=tuple(opts.keep_env),
        )
        store = ResultStore(opts.output)
        moved = store.move_aside() if opts.fresh else None
        if on_event is not None:
            on_event(
                Prepared(
                    models=tuple((m.id, m.dropped) for m in models),
                    skipped_models=tuple(skipped.items()),
                    moved_aside=str(moved) if moved else None,
                    host_os=launcher.os_name,
                )
            )
        summary = run_sweep(config, launcher, store, on_event=on_event)
    finally:
        if own:
            launcher.close()
    return BenchOutcome(
        output=opts.output,
        summary=summary,
        moved_aside=moved,
        models=models,
        arms=arms,
        prompts=prompts,
        host_os=launcher.os_name,
        skipped_models=skipped,
    )


__all__ = ["REMOTE_PREFIX", "BenchOptions", "BenchOutcome", "open_launcher", "run_bench"]
