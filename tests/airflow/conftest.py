"""Tests run in the delab-airflow environment: one Airflow home for the whole session, set up before any test
module imports Airflow, and the services the checks use."""

from delab import stack
from delab.orchestration import airflow as lab_airflow

lab_airflow.setup("airflow_tests")
stack.require("postgres", "s3")
