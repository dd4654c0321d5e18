"""Write FLINK_CONF_DIR/config.yaml: the wheel's own config.yaml (it carries the JVM flags Flink needs on Java 17)
with settings.yaml on top — what delab.stack.native.Flink.prepare does for the native profile."""

import os
import sys

import yaml


def merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


wheel_config, settings, target = sys.argv[1:4]
with open(wheel_config) as f:
    base = yaml.safe_load(f) or {}
with open(settings) as f:
    override = yaml.safe_load(f) or {}
os.makedirs(os.path.dirname(target), exist_ok=True)
with open(target, "w") as f:
    yaml.safe_dump(merge(base, override), f, sort_keys=False)
