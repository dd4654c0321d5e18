"""Checks of module 02 (loading and CDC), one file per lab; ``check.m02.<name>`` finds them by name."""

from delab.checks import lab_checks

__getattr__ = lab_checks(__name__, __path__)
