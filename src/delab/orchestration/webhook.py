"""The alert receiver of lab 01.04 (and any lab that alerts): see ``delab.localhttp.Receiver``."""

from delab.localhttp import Receiver

__all__ = ["Receiver"]
