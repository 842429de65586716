"""llama-server flags: the table, the validator (a security boundary), canonical form and key.

The daemon passes flags from untrusted HTTP clients to a process it spawns, so every flag is
parsed exactly as llama.cpp's own parser would, checked against a :class:`FlagPolicy`, and
only then turned into the canonical argv that also keys the sidecar pool::

    v = validate_flags("--top-k 20 -c 8192")      # never raises for bad flags
    v.raise_for_problems()                         # FlagError listing every problem
    argv = merge_flags(DEFAULT_BASE_ARGS, v.canonical)
    key = sidecar_key("smollm2-135m", argv)
"""

from llamasc.flags.canonical import canonicalize, merge_flags, sidecar_key
from llamasc.flags.defaults import DEFAULT_BASE_ARGS, fix_legacy_base_args
from llamasc.flags.help import parse_help_text, table_from_help
from llamasc.flags.policy import FlagPolicy
from llamasc.flags.table import FlagSpec, FlagTable, load_default_table
from llamasc.flags.tokens import parse_flag_input
from llamasc.flags.validate import FlagVerdict, Validation, validate_flags

__all__ = [
    "DEFAULT_BASE_ARGS",
    "FlagPolicy",
    "FlagSpec",
    "FlagTable",
    "FlagVerdict",
    "Validation",
    "canonicalize",
    "fix_legacy_base_args",
    "load_default_table",
    "merge_flags",
    "parse_flag_input",
    "parse_help_text",
    "sidecar_key",
    "table_from_help",
    "validate_flags",
]
