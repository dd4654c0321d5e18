"""`tofu test` of every module under infra/terraform/modules (plans against mocked providers: no service needed),
and the python-terraform wrapper's handling of its quirks."""

from __future__ import annotations

import pytest

from delab import iac
from delab.iac import backends

MODULES = sorted(path.name for path in iac.modules_dir().iterdir() if (path / "tests").is_dir())


@pytest.mark.parametrize("module", MODULES)
def test_module_tests_pass(module, tmp_path):
    import shutil

    # a copy of every module (never leave .terraform folders in the repository): a composition such as
    # `environment` calls its siblings by relative path (../kafka_topics)
    shutil.copytree(iac.modules_dir(), tmp_path / "modules", ignore=shutil.ignore_patterns(".terraform*"))
    tofu = iac.Tofu(tmp_path / "modules" / module)
    tofu.init()
    passed, output = tofu.test()
    assert passed, output
    assert " 0 failed" in output or "Success!" in output


def test_every_module_has_tests_and_validation():
    for path in iac.modules_dir().iterdir():
        assert (path / "tests").is_dir(), f"{path.name} has no tests/"
        assert "validation {" in (path / "variables.tf").read_text(), f"{path.name} validates nothing"
        assert (path / "outputs.tf").exists(), f"{path.name} has no outputs"


def test_apply_and_destroy_send_flags_tofu_accepts(tmp_path):
    root = iac.write_root(
        tmp_path / "root",
        'resource "terraform_data" "x" {\n  input = var.v\n}\nvariable "v" {\n  type = string\n}\n',
        providers=(),
    )
    tofu = iac.Tofu(root, variables={"v": "one"})
    tofu.init()
    plan = tofu.plan()
    assert plan.changes and plan.summary() == {"create": 1}
    tofu.apply(plan)
    assert tofu.state_list() == ["terraform_data.x"]
    assert tofu.plan().changes is False
    tofu.apply(variables={"v": "two"})  # plan-and-apply in one go: no prompt
    assert tofu.show()["values"]["root_module"]["resources"][0]["values"]["input"] == "two"
    tofu.destroy()  # python-terraform's destroy() would send -force
    assert tofu.state_list() == []


def test_errors_are_one_line(tmp_path):
    root = iac.write_root(tmp_path / "bad", 'resource "terraform_data" "x" {\n  input = var.missing\n}\n', providers=())
    tofu = iac.Tofu(root)
    tofu.init()
    with pytest.raises(iac.TofuError, match="Reference to undeclared input variable"):
        tofu.plan()


def test_backend_files_are_hcl():
    text = backends.backend_file({"bucket": "b", "use_lockfile": True, "endpoints": {"s3": "http://h:1"}})
    assert text == 'bucket = "b"\nuse_lockfile = true\nendpoints = { s3 = "http://h:1" }\n'
