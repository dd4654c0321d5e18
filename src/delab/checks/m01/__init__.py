"""Checks of module 01 (workflow orchestration), one file per lab; ``check.m01.<name>`` finds them by name."""

from delab.checks import lab_checks

__getattr__ = lab_checks(__name__, __path__)
