"""Where llamasc finds things: the llama-server binary, the models, the settings."""

from llamasc.config.binary import find_llama_server, llama_server_candidates
from llamasc.config.models import (
    DEMO_MODEL_ID,
    ModelCatalog,
    ModelEntry,
    demo_model_path,
    discover_models,
    load_model_map,
    parse_model_map,
    scan_models_dir,
)

__all__ = [
    "DEMO_MODEL_ID",
    "ModelCatalog",
    "ModelEntry",
    "demo_model_path",
    "discover_models",
    "find_llama_server",
    "llama_server_candidates",
    "load_model_map",
    "parse_model_map",
    "scan_models_dir",
]
