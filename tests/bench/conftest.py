"""Fixtures for the bench tests: the real sshd."""

from sshd_fixture import sshd

__all__ = ["sshd"]
