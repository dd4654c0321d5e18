"""Helpers that let notebooks drive real orchestrators in-process: Airflow (dag.test), Prefect and Dagster."""
