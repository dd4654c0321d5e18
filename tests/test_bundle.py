"""The offline bundle's gate (`scripts/bundle check`, run by `make setup BUNDLE=...`): a bundle that fits this
checkout and machine is accepted; one made on another machine kind, for another Python or from other locks is
refused in one line that says what to do. The whole install path is proven by scripts/prove-offline-bundle."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "scripts" / "bundle"


def _manifest_of_this_checkout() -> dict[str, str]:
    """What `scripts/bundle make` would record here, read back from the script's own `inputs`."""
    inputs = subprocess.run([str(BUNDLE), "inputs"], capture_output=True, text=True, check=True).stdout
    manifest = dict(line.split("=", 1) for line in inputs.splitlines())
    manifest.update(
        format="1",
        made="2026-12-06T00:00:00Z",
        commit="abc1234",
        platform=f"{platform.system()}-{platform.machine()}",
        python=f"{sys.version_info[0]}.{sys.version_info[1]}",
    )
    return manifest


def _check(tmp_path: Path, manifest: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    if manifest is not None:
        (bundle / "MANIFEST").write_text("".join(f"{key}={value}\n" for key, value in manifest.items()))
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(BUNDLE), "check", str(bundle)], capture_output=True, text=True, env=env)


def test_a_bundle_of_this_checkout_is_accepted(tmp_path: Path) -> None:
    result = _check(tmp_path, _manifest_of_this_checkout())
    assert result.returncode == 0, result.stderr
    assert "installing offline from" in result.stdout
    assert "commit abc1234" in result.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"platform": "Darwin-arm64"}, "was made on Darwin-arm64"),
        ({"python": "3.12"}, "is for Python 3.12"),
        ({"lock.main": "0000000000000000"}, "lock.main differs"),
        ({"maven": "0000000000000000"}, "maven differs"),
    ],
)
def test_a_bundle_of_another_machine_or_checkout_is_refused(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    result = _check(tmp_path, {**_manifest_of_this_checkout(), **change})
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one actionable line, no trace


def test_a_folder_that_is_no_bundle_is_refused(tmp_path: Path) -> None:
    result = _check(tmp_path, None)
    assert result.returncode == 1
    assert "is not an offline bundle (no MANIFEST): make one with make bundle" in result.stderr


def test_doctor_needs_no_go_with_a_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from delab.stack import cli

    monkeypatch.setenv("PATH", str(tmp_path))  # no go on PATH
    monkeypatch.delenv("DELAB_BUNDLE", raising=False)
    assert "Go not found" in (cli._check_go() or "")
    monkeypatch.setenv("DELAB_BUNDLE", str(tmp_path))
    assert cli._check_go() is None
