"""delab.iac.kube without a cluster: JSON Schema → a CRD's structural schema, and offline validation."""

from __future__ import annotations

from delab.iac import kube

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "kind": {"const": "Thing"},
        "spec": {"$ref": "#/$defs/Spec"},
    },
    "required": ["kind", "spec"],
    "additionalProperties": False,
    "$defs": {
        "Spec": {
            "type": "object",
            "properties": {
                "size": {"type": ["string", "number"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "anything": {},
                "child": {"$ref": "#/$defs/Spec"},
                "items": {"type": "array", "items": {"type": "integer", "minimum": 1}},
            },
            "required": ["size"],
            "additionalProperties": False,
        }
    },
}


def test_structural_schema_inlines_references_and_stops_at_recursion():
    out = kube.structural_schema(SCHEMA)
    assert out["required"] == ["kind", "spec"] and "additionalProperties" not in out and "$defs" not in out
    assert out["properties"]["kind"] == {"type": "string", "enum": ["Thing"]}
    spec = out["properties"]["spec"]
    assert spec["type"] == "object" and spec["required"] == ["size"] and "additionalProperties" not in spec
    assert spec["properties"]["size"] == {"x-kubernetes-int-or-string": True}
    assert spec["properties"]["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert spec["properties"]["anything"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert spec["properties"]["child"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert spec["properties"]["items"] == {"type": "array", "items": {"type": "integer", "minimum": 1}}


def test_structural_schema_keeps_deep_types_open():
    out = kube.structural_schema(SCHEMA, max_depth=0)
    assert out["properties"]["spec"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_offline_validation_names_the_field():
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }
    assert kube.offline_error(deployment) is None
    deployment["spec"]["replicas"] = "2"
    assert kube.offline_error(deployment).startswith("spec.replicas:")
    assert "no schema" in kube.offline_error({"apiVersion": "data.delab.local/v1alpha1", "kind": "KafkaTopic"})
