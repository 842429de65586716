"""Per-model and top-level settings that came with llama-swap compatibility, mixed into
:class:`~llamasc.config.settings.ModelSettings` and :class:`~llamasc.config.settings.Settings`.

A native config file may use them too::

    api_keys = ["key-1", "key-2"]        # any of them; Bearer, x-api-key or Basic auth
    include_aliases_in_list = true       # aliases as their own /v1/models entries

    [peers.gpu-box]                      # models served by another host, forwarded there
    proxy = "http://gpu-box:8402"
    models = ["qwen3-coder"]
    api_key = "..."                      # sent as Authorization: Bearer and x-api-key
    connect_timeout = 5                  # 502 naming the peer if it does not answer

    [models.smol]
    aliases = ["small"]                  # other names for the model
    unlisted = true                      # routable, not in /v1/models
    name = "SmolLM2 135M"                # shown in /v1/models
    description = "tiny"
    metadata = { family = "smollm" }
    use_model_name = "HuggingFaceTB/SmolLM2"   # the "model" sent upstream
    filters = { strip_params = ["top_p"], set_params = { temperature = 0.2 } }
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FilterSettings(BaseModel):
    """Request-body rewrites: drop keys, force keys, force keys for one requested name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strip_params: tuple[str, ...] = ()
    set_params: dict[str, Any] = Field(default_factory=dict)
    set_params_by_id: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.strip_params or self.set_params or self.set_params_by_id)


class PeerSettings(BaseModel):
    """Another OpenAI-compatible server (a llamasc, a llama-swap...) and the models it serves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    proxy: str
    models: tuple[str, ...] = Field(min_length=1)
    api_key: str = ""
    filters: FilterSettings = Field(default_factory=FilterSettings)
    connect_timeout: float = Field(default=30.0, gt=0)


class OpaqueSettings(BaseModel):
    """A model served by another program (llama-swap's ``cmd`` that is not llama-server):
    run as given (an argv, never a shell), ``${PORT}`` filled from the port range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    argv: tuple[str, ...] = Field(min_length=1)
    cmd_stop: tuple[str, ...] = ()  # ${PID}, ${MODEL_ID}, ${PORT} filled
    proxy: str = "http://localhost:${PORT}"
    check_endpoint: str = "/health"  # "none": ready once spawned
    unload_timeout: float | None = Field(default=None, ge=0)  # None: stop_grace


class ModelSwapFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    opaque: OpaqueSettings | None = None

    aliases: tuple[str, ...] = ()
    unlisted: bool = False
    name: str = ""
    description: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    capabilities: dict[str, Any] = Field(default_factory=dict)
    use_model_name: str = ""
    filters: FilterSettings = Field(default_factory=FilterSettings)


class SwapFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_keys: tuple[str, ...] = ()
    include_aliases_in_list: bool = False
    peers: dict[str, PeerSettings] = Field(default_factory=dict)
    swap_warnings: tuple[str, ...] = ()  # set by the llama-swap reader, logged at start-up


__all__ = ["FilterSettings", "ModelSwapFields", "OpaqueSettings", "PeerSettings", "SwapFields"]
