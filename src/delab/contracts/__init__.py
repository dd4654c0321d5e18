"""Helpers of module 05 (data contracts and quality management): one file per concern, imported by the labs."""
