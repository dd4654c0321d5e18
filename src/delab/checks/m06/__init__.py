"""Checks of module 06 (model serving and MLOps), one file per lab; ``check.m06.<name>`` finds them by name."""

from delab.checks import lab_checks

__getattr__ = lab_checks(__name__, __path__)
