"""Several environments of one platform (lab 07.04): a stand-in secret store, var files, and a secret scanner.

- ``vault``: secrets made once at random and kept in a file under the lab's run folder (outside the repository),
  standing in for a real secret store (Vault, AWS Secrets Manager, a CI secret): the same values on every re-run,
  never in a notebook or a .tf file;
- ``tfvars``: a var file's text from Python values;
- ``files_containing``: every file of a folder that holds a secret, looking inside zip archives too (a saved
  plan is a zip file that holds the values of every variable, sensitive ones included).
"""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from pathlib import Path

from delab.iac.backends import hcl_value

ENVIRONMENTS = ("dev", "staging", "prod")


def vault(path: str | Path, names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Secrets by name from a local file (created on first use, 0600); missing names get a new random value."""
    path = Path(path)
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in names if name not in stored]
    if missing:
        stored.update({name: secrets.token_urlsafe(18) for name in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=1))
        path.chmod(0o600)
    return {name: stored[name] for name in names}


def hcl(value: object) -> str:
    """A Python value (dict, list, str, number, bool) as an HCL expression."""
    return hcl_value(value)


def tfvars(values: dict[str, object]) -> str:
    """The text of a .tfvars file setting these variables."""
    return "".join(f"{name} = {hcl_value(value)}\n" for name, value in values.items())


def _holds(data: bytes, needle: bytes) -> bool:
    if needle in data:
        return True
    if data[:4] != b"PK\x03\x04":  # not a zip archive
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(needle in archive.read(member) for member in archive.namelist())
    except (zipfile.BadZipFile, OSError, RuntimeError):
        return False


#: never scanned: git's own objects, and provider binaries (tens of MB each, copied from the mirror by init)
SKIPPED = (".git/", ".terraform/providers/")


def files_containing(folder: str | Path, secret: str, skip: tuple[str, ...] = SKIPPED) -> list[str]:
    """Paths (relative to ``folder``, sorted) of the files that hold ``secret``, inside zip archives included."""
    folder = Path(folder)
    needle = secret.encode()
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(f"/{prefix}" in f"/{relative.as_posix()}" for prefix in skip) or not path.is_file():
            continue
        if _holds(path.read_bytes(), needle):
            found.append(str(relative))
    return found
