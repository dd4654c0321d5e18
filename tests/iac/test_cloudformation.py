"""delab.iac.cloudformation without the emulator: the project's templates lint clean, declared properties resolve
the environment's conditions, and jsonschema survives the optional import the emulator's launcher skips."""

from __future__ import annotations

import subprocess
import sys

import pytest

from delab.iac import cloudformation as cf

TEMPLATES = sorted(path.stem for path in cf.template_path("x").parent.glob("*.yaml"))


@pytest.mark.parametrize("name", TEMPLATES)
def test_project_templates_lint_clean(name):
    assert cf.lint(cf.template_path(name).read_text()) == []


def test_lint_reports_rule_line_and_message():
    broken = cf.template_path("shop_platform").read_text().replace("VisibilityTimeout: 60", "VisibilityTimeout: 999999")
    (finding,) = cf.lint(broken)
    assert finding["rule"] == "E3034" and finding["severity"] == "error" and "43200" in finding["message"]


def test_declared_properties_resolve_the_environment_and_drop_other_intrinsics():
    template = cf.template_path("shop_platform").read_text()
    dev = cf.declared_properties(template, "OrdersQueue")
    assert dev == {"VisibilityTimeout": 60, "MessageRetentionPeriod": 345600}  # RedrivePolicy holds a !GetAtt
    assert cf.declared_properties(template, "OrdersQueue", {"Environment": "prod"})["MessageRetentionPeriod"] == 1209600
    assert cf.declared_properties(template, "RawBucket")["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "BucketName" not in cf.declared_properties(template, "RawBucket")  # a !Sub


def test_jsonschema_works_without_the_iri_grammar_the_launcher_skips():
    """moto_server.warm() makes `import rfc3987_syntax` fail; jsonschema must treat it as an optional extra."""
    code = (
        "import sys; sys.modules['rfc3987_syntax'] = None\n"
        "import jsonschema\n"
        "checker = jsonschema.Draft202012Validator.FORMAT_CHECKER\n"
        "jsonschema.validate({'a': 'x@y.z'}, {'properties': {'a': {'format': 'email'}}}, format_checker=checker)\n"
        "print('iri' in checker.checkers)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # only the IRI formats are gone
