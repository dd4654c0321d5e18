"""Tests run in the delab-flink environment (`.venv-flink/bin/pytest tests/flink`): the checks of the Flink labs
submit real jobs to the stack's Flink cluster."""

import pytest

from delab import stack


@pytest.fixture(scope="module", autouse=True)  # the root conftest gives the locks back after each module
def flink_services():
    stack.require("kafka", "flink", quiet=True)
