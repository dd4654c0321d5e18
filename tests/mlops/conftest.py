"""Tests run in the delab-mlops environment (`.venv-mlops/bin/pytest tests/mlops`): module 06's checks and the
stack's MLflow service."""
