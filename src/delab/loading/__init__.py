"""Helpers of module 02 (data loading and change data capture): one file per concern, imported by the labs."""
