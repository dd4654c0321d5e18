"""Checks of module 03 (stream processing), one file per lab; ``check.m03.<name>`` finds them by name."""

from delab.checks import lab_checks

__getattr__ = lab_checks(__name__, __path__)
