"""Checks of module 04 (data lake and lakehouse), one file per lab; ``check.m04.<name>`` finds them by name."""

from delab.checks import lab_checks

__getattr__ = lab_checks(__name__, __path__)
