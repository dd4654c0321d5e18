"""Tests run in the delab-flink environment (`.venv-flink/bin/pytest tests/flink`): the checks of the Flink labs
submit real jobs to the stack's Flink cluster."""

import pytest

from delab import stack


@pytest.fixture(scope="session", autouse=True)
def flink_services():
    stack.require("kafka", "flink", quiet=True)
