"""Helpers of module 03 (stream processing): one file per concern, imported by the labs."""
