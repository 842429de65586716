"""Fixtures for the remote tests: the real sshd."""

from sshd_fixture import sshd

__all__ = ["sshd"]
