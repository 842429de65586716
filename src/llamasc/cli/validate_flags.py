"""`llamasc validate-flags`: placeholder until the validator lands."""

from __future__ import annotations


def validate_flags() -> None:
    """Check llama-server flags (not implemented yet)."""
    from llamasc.cli._output import fail

    fail("'llamasc validate-flags' is not implemented yet", exit_code=2)
