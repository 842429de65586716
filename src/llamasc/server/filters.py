"""llama-swap's request filters: ``stripParams``, ``setParams``, ``setParamsByID`` and
``useModelName``, applied to a JSON request body before it goes upstream.

Only models that have one pay for it: the body is parsed and re-serialised for them alone.
``setParamsByID`` is keyed by the name the client asked for (an alias made for it), and is
applied after ``setParams``. ``model`` is never stripped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llamasc.config import ModelCatalog
from llamasc.config.settings import ModelSettings
from llamasc.errors import RequestError


@dataclass(frozen=True)
class ModelFilter:
    strip: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)
    by_id: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model_name: str = ""

    def apply(self, requested: str, body: bytes) -> bytes:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            raise RequestError("request body is not valid JSON") from None
        if not isinstance(data, dict):
            return body
        for key in self.strip:
            if key != "model":
                data.pop(key, None)
        data.update(self.set_params)
        data.update(self.by_id.get(requested, {}))
        if self.model_name:
            data["model"] = self.model_name
        return json.dumps(data, separators=(",", ":")).encode()


class BodyFilters:
    """The filters of every model that has one, found by the requested name (id or alias)."""

    def __init__(self, catalog: ModelCatalog, models: Mapping[str, ModelSettings]) -> None:
        self._by_model: dict[str, ModelFilter] = {}
        for mid, m in models.items():
            f = m.filters
            if f.active or m.use_model_name:
                self._by_model[mid] = ModelFilter(
                    f.strip_params, f.set_params, f.set_params_by_id, m.use_model_name
                )
        self._catalog = catalog

    def __bool__(self) -> bool:
        return bool(self._by_model)

    def apply(self, requested: str, body: bytes) -> bytes:
        mid = self._catalog.aliases.get(requested, requested)
        f = self._by_model.get(mid)
        return body if f is None else f.apply(requested, body)


__all__ = ["BodyFilters", "ModelFilter"]
