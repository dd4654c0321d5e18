"""delab — the helper package of the Data Engineering & ETL Labs.

Notebooks start with ``from delab import check, datasets, grading`` (and ``stack`` when they need services).
"""

from delab import checks as check
from delab import config, datasets, grading

__all__ = ["check", "config", "datasets", "grading"]
__version__ = "0.1.0"
