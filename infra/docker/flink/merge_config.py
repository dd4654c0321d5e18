"""Write FLINK_CONF_DIR/config.yaml: the wheel's own config.yaml (it carries the JVM flags Flink needs on Java 17)
with settings.yaml on top, ${VAR}s taken from the environment — what the native profile's Flink.prepare does."""

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
    text = "".join(line for line in f if not line.lstrip().startswith("#"))
text = os.path.expandvars(text)
if "${" in text:
    sys.exit(f"{settings}: unset variable in {text[text.index('${') :].split('}')[0]}}}")
os.makedirs(os.path.dirname(target), exist_ok=True)
with open(target, "w") as f:
    yaml.safe_dump(merge(base, yaml.safe_load(text) or {}), f, sort_keys=False)
