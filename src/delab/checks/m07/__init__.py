"""Checks of module 07 (infrastructure as code), one file per lab; ``check.m07.<name>`` finds them by name."""

from delab.checks import lab_checks

__getattr__ = lab_checks(__name__, __path__)
