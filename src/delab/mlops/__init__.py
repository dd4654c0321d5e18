"""Module 06 (model serving and MLOps), run in the delab-mlops kernel: the shop's models, the stack's MLflow
registry, and helpers to serve, load-test and measure them.

* ``delab.mlops.registry`` — point MLflow at the stack's tracking server and model registry.
* ``delab.mlops.shop_models`` — order features read from the stack's Postgres; a small model trained in seconds.
* ``delab.mlops.bento`` — a BentoML model store per lab; build and serve a service on loopback.
* ``delab.mlops.load`` — a bounded load generator (fixed request budget) and latency percentiles.
"""
