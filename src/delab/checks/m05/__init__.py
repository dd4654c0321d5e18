"""Checks of module 05 (data contracts and quality), one file per lab; ``check.m05.<name>`` finds them by name."""

from delab.checks import lab_checks

__getattr__ = lab_checks(__name__, __path__)
