"""The write steps of the data-platform modules (lab 07.07) that have no provider here.

No Kafka Connect, schema-registry, S3 or Iceberg-catalog provider is served by the module proxy on this machine
(docs/iac.md), so the modules ``cdc_connector``, ``schema_subjects`` and ``lakehouse_namespace`` declare their
objects as ``terraform_data`` resources whose ``local-exec`` provisioners run ``delab platform create`` (at
create) and ``delab platform delete`` (at destroy, from ``self.input``). The resource's input arrives as JSON in
``DELAB_PLATFORM_SPEC``; ``spec["kind"]`` says what it describes. Every step is idempotent (creating what exists,
deleting what is gone: no error) and fails with one line naming what went wrong.

Secrets never travel through the configuration: the connector's database password comes from ``PGPASSWORD``
in OpenTofu's environment (libpq's convention) or, for the stack's own learner role, from delab.config; S3
credentials from the stack's config, as the AWS variables of ``delab.iac.tofu.environment()`` say.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from delab import config
from delab.stack.errors import StackError

SPEC_VARIABLE = "DELAB_PLATFORM_SPEC"


class PlatformError(StackError):
    """A platform step failed; the message is one line saying what and why."""


def _require(spec: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in spec]
    if missing:
        raise PlatformError(f"the {spec.get('kind', '?')} spec lacks {', '.join(missing)}")


def _http(method: str, url: str, **kwargs: Any):
    import requests

    try:
        return requests.request(method, url, timeout=30, **kwargs)
    except requests.RequestException as error:
        raise PlatformError(f"{method} {url} failed: {type(error).__name__} (is the service running?)") from None


def _message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body)[:300]


# ------------------------------------------------------------------------------------------------ the connector


def database_password(user: str) -> str:
    """The connector login's password: PGPASSWORD from the environment, else the stack's own learner role's."""
    if os.environ.get("PGPASSWORD"):
        return os.environ["PGPASSWORD"]
    if user == config.postgres().user:
        return config.postgres().password
    raise PlatformError(f"no password for the database user {user!r}: set PGPASSWORD in OpenTofu's environment")


def _wait_state(connect_url: str, name: str, wanted: str, timeout: float) -> dict:
    """Wait until Connect reports the connector (and all its tasks, when RUNNING is wanted) in ``wanted``."""
    deadline = time.monotonic() + timeout
    while True:
        state = _http("GET", f"{connect_url}/connectors/{name}/status").json()
        tasks = state.get("tasks", []) if isinstance(state, dict) else []
        failed = [task for task in tasks if task.get("state") == "FAILED"]
        if failed and wanted == "RUNNING":
            trace = (failed[0].get("trace") or "").strip().splitlines()[:1]
            raise PlatformError(
                f"connector {name} failed: {trace[0][:300] if trace else 'see delab stack logs connect'}"
            )
        connector_state = state.get("connector", {}).get("state") if isinstance(state, dict) else None
        if connector_state == wanted and (
            wanted != "RUNNING" or (tasks and all(t.get("state") == wanted for t in tasks))
        ):
            return state
        if time.monotonic() > deadline:
            raise PlatformError(f"connector {name} is not {wanted} after {timeout:.0f} s: {state}")
        time.sleep(0.3)


def create_connector(spec: dict[str, Any], timeout: float = 90.0) -> str:
    """Create the connector (its password added here) and wait until it and its task run; on failure, delete it
    again (and its slot).

    Connect keeps a source connector's offsets in its offsets topic after the connector is deleted, so a new
    connector of the same name would resume from a position its brand-new slot never had ("no longer available
    on the server"). A new connector is therefore created STOPPED (KIP-980), its offsets are reset (KIP-875), and
    only then resumed. A connector of that name that exists already is a leftover: it is deleted first."""
    _require(spec, "name", "connect_url", "config")
    name, url = spec["name"], spec["connect_url"]
    settings = dict(spec["config"])
    settings["database.password"] = database_password(settings.get("database.user", ""))
    if _http("GET", f"{url}/connectors/{name}").status_code == 200:
        # a leftover of a create that failed (OpenTofu runs no destroy step for a tainted resource): start afresh
        delete_connector(spec)
    body = {"name": name, "config": settings, "initial_state": "STOPPED"}
    response = _http("POST", f"{url}/connectors", json=body)
    if response.status_code >= 400:
        raise PlatformError(f"Kafka Connect refused connector {name}: {_message(response)}")
    try:
        _wait_state(url, name, "STOPPED", timeout)
        reset = _http("DELETE", f"{url}/connectors/{name}/offsets")
        if reset.status_code >= 400:
            raise PlatformError(f"Kafka Connect did not reset the offsets of {name}: {_message(reset)}")
        _http("PUT", f"{url}/connectors/{name}/resume")
        _wait_state(url, name, "RUNNING", timeout)
    except PlatformError:
        # leave nothing behind: the resource is tainted and its destroy step will not run
        with contextlib.suppress(Exception):
            delete_connector(spec)
        raise
    return f"connector {name} running (slot {spec.get('slot')}, publication {spec.get('publication')})"


def delete_connector(spec: dict[str, Any], timeout: float = 30.0) -> str:
    """Delete the connector, then drop its replication slot (a slot nobody reads holds WAL forever) and, if
    Debezium created it (``owns_publication``), its publication."""
    import psycopg

    from delab.loading.cdc import drop_slot

    _require(spec, "name", "connect_url", "config", "slot")
    name, settings, url = spec["name"], spec["config"], spec["connect_url"]
    # stop it and reset its offsets first (KIP-875), so nothing of it is left in Connect's offsets topic
    if _http("PUT", f"{url}/connectors/{name}/stop").status_code < 400:
        with contextlib.suppress(PlatformError):
            _wait_state(url, name, "STOPPED", timeout)
            _http("DELETE", f"{url}/connectors/{name}/offsets")
    response = _http("DELETE", f"{url}/connectors/{name}")
    if response.status_code not in (200, 204, 404):
        raise PlatformError(f"Kafka Connect did not delete connector {name}: {_message(response)}")
    try:
        conn = psycopg.connect(
            host=settings["database.hostname"],
            port=int(settings["database.port"]),
            dbname=settings["database.dbname"],
            user=settings["database.user"],
            password=database_password(settings["database.user"]),
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.OperationalError as error:
        if "does not exist" in str(error):  # the database went first: its slots and publications went with it
            return f"connector {name} deleted (database {settings['database.dbname']} already gone)"
        raise PlatformError(
            f"cannot reach {settings['database.dbname']} to drop slot {spec['slot']}: "
            + (str(error).strip().splitlines() or ["?"])[0]
        ) from None
    with conn:
        drop_slot(spec["slot"], conn, timeout)  # waits until Connect's walsender let go of it
        if spec.get("owns_publication") and spec.get("publication"):
            conn.execute(f'DROP PUBLICATION IF EXISTS "{spec["publication"]}"')
    return f"connector {name} deleted, slot {spec['slot']} dropped"


# ---------------------------------------------------------------------------------------- registry subjects


def _set_mode(spec: dict[str, Any]) -> bool:
    """PUT the subject's compatibility mode; False if the registry answers 404 because the subject has no version
    yet (some registries keep a mode only for an existing subject; Apicurio 3.3 and Confluent accept it before)."""
    url = f"{spec['registry_url']}/config/{spec['subject']}"
    response = _http("PUT", url, json={"compatibility": spec["compatibility"]})
    if response.status_code == 404:
        return False
    if response.status_code >= 400:
        raise PlatformError(
            f"the registry refused mode {spec['compatibility']} for {spec['subject']}: {_message(response)}"
        )
    return True


def create_subject(spec: dict[str, Any]) -> str:
    """Set the subject's compatibility mode (if the subject is new, its first version sets it)."""
    _require(spec, "registry_url", "subject", "compatibility")
    if _set_mode(spec):
        return f"subject {spec['subject']}: {spec['compatibility']}"
    return f"subject {spec['subject']}: {spec['compatibility']} once its first version is registered"


def register_version(spec: dict[str, Any]) -> str:
    """Set the mode, then register the schema (the same schema again returns its existing id: idempotent); the
    registry refuses a schema that breaks the subject's compatibility mode. A new subject's mode is set right
    after its first version (nothing to be compatible with before it)."""
    _require(spec, "registry_url", "subject", "compatibility", "schema")
    mode_set = _set_mode(spec)
    body: dict[str, Any] = {"schema": spec["schema"]}
    if spec.get("schema_type", "AVRO") != "AVRO":
        body["schemaType"] = spec["schema_type"]
    response = _http("POST", f"{spec['registry_url']}/subjects/{spec['subject']}/versions", json=body)
    if response.status_code >= 400:
        raise PlatformError(f"the registry refused the schema of {spec['subject']}: {_message(response)}")
    if not mode_set and not _set_mode(spec):
        raise PlatformError(f"the registry keeps no mode for {spec['subject']} even after its first version")
    return f"subject {spec['subject']}: schema id {response.json().get('id')}, {spec['compatibility']}"


def delete_subject(spec: dict[str, Any]) -> str:
    """Delete the subject and every version: soft delete, then permanent (the Confluent API's two steps)."""
    _require(spec, "registry_url", "subject")
    url = f"{spec['registry_url']}/subjects/{spec['subject']}"
    for params in ({}, {"permanent": "true"}):
        response = _http("DELETE", url, params=params)
        if response.status_code >= 400 and response.status_code != 404:
            raise PlatformError(f"the registry did not delete {spec['subject']}: {_message(response)}")
    _http("DELETE", f"{spec['registry_url']}/config/{spec['subject']}")  # its mode too (404 if it had none)
    return f"subject {spec['subject']} deleted"


# ------------------------------------------------------------------------------------- bucket and namespace


def create_bucket(spec: dict[str, Any]) -> str:
    """Create the bucket on the stack's object store (nothing to do if it exists)."""
    from botocore.exceptions import ClientError

    from delab import clients

    _require(spec, "bucket")
    s3 = clients.s3()
    try:
        s3.head_bucket(Bucket=spec["bucket"])
        return f"bucket {spec['bucket']} exists"
    except ClientError:
        pass
    try:
        s3.create_bucket(Bucket=spec["bucket"])
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise PlatformError(f"cannot create bucket {spec['bucket']}: {error}") from None
    return f"bucket {spec['bucket']} created"


def delete_bucket(spec: dict[str, Any]) -> str:
    """Delete the bucket; with ``force_destroy`` its objects first, else refuse while it holds any."""
    from botocore.exceptions import ClientError

    from delab import clients

    _require(spec, "bucket")
    bucket = spec["bucket"]
    s3 = clients.s3()
    try:
        keys = clients.s3_keys("", bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("NoSuchBucket", "404"):
            return f"bucket {bucket} already gone"
        raise PlatformError(f"cannot list bucket {bucket}: {error}") from None
    if keys and not spec.get("force_destroy"):
        raise PlatformError(
            f"bucket {bucket} still holds {len(keys)} object(s) (e.g. {keys[0]}): empty it or set force_destroy = true"
        )
    clients.s3_delete_prefix("", bucket=bucket)
    s3.delete_bucket(Bucket=bucket)
    return f"bucket {bucket} deleted ({len(keys)} object(s) with it)"


def create_namespace(spec: dict[str, Any]) -> str:
    """Create the Iceberg namespace with its location (nothing to do if it exists with that location)."""
    from delab import lakehouse

    _require(spec, "catalog", "namespace", "location")
    catalog = lakehouse.catalog(spec["catalog"])
    namespace = spec["namespace"]
    if catalog.namespace_exists(namespace):
        location = catalog.load_namespace_properties(namespace).get("location")
        if location != spec["location"]:
            raise PlatformError(f"namespace {namespace} exists with location {location}, not {spec['location']}")
        return f"namespace {namespace} exists"
    catalog.create_namespace(namespace, {"location": spec["location"]})
    return f"namespace {namespace} created at {spec['location']}"


def delete_namespace(spec: dict[str, Any]) -> str:
    """Drop the namespace; with ``force_destroy`` its tables and their files first, else refuse while it has
    tables (an Iceberg catalog would refuse to drop a namespace that is not empty anyway)."""
    from urllib.parse import urlparse

    from delab import clients, lakehouse

    _require(spec, "catalog", "namespace", "location")
    catalog = lakehouse.catalog(spec["catalog"])
    namespace = spec["namespace"]
    if not catalog.namespace_exists(namespace):
        return f"namespace {namespace} already gone"
    tables = [".".join(identifier) for identifier in catalog.list_tables(namespace)]
    if tables and not spec.get("force_destroy"):
        raise PlatformError(
            f"namespace {namespace} still has {len(tables)} table(s) ({', '.join(tables)}): "
            "drop them or set force_destroy = true"
        )
    for table in tables:
        catalog.drop_table(table)
    location = urlparse(spec["location"])
    # the bucket may be gone already (it is destroyed after the namespace, but a rerun may find it missing)
    with contextlib.suppress(Exception):
        clients.s3_delete_prefix(location.path.strip("/") + "/", bucket=location.netloc)
    catalog.drop_namespace(namespace)
    return f"namespace {namespace} dropped ({len(tables)} table(s) with it)"


#: kind -> (create, delete); a kind without a delete step leaves the object when its resource is destroyed
# ------------------------------------------------------------------- role membership (postgres_app_database)


def grant_role_to_admin(spec: dict[str, Any]) -> str:
    """Make the login the Postgres provider connects as (the stack's, from delab.config) a member of a role.

    Provider v1.7.1 runs GRANT CONNECT and ALTER DATABASE without first joining the database owner's role (the
    current provider does): as a non-superuser it would be refused or, worse, only warned. Joining the owner
    role once fixes both; the membership goes when the role is dropped, so there is no delete step.
    """
    import psycopg
    from psycopg import sql

    from delab import clients

    _require(spec, "role")
    pg = config.postgres()
    try:
        with clients.postgres() as conn:
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(spec["role"])))
    except psycopg.Error as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise PlatformError(f"could not make {pg.user} a member of role {spec['role']}: {first}") from None
    return f"{pg.user} is a member of {spec['role']}"


STEPS: dict[str, tuple[Callable[[dict], str], Callable[[dict], str] | None]] = {
    "role_membership": (grant_role_to_admin, None),
    "connector": (create_connector, delete_connector),
    "subject": (create_subject, delete_subject),
    "subject_version": (register_version, None),
    "bucket": (create_bucket, delete_bucket),
    "namespace": (create_namespace, delete_namespace),
}


def run_step(action: str, spec_text: str | None) -> str:
    """Run ``create`` or ``delete`` for the spec (JSON text of a terraform_data input); returns what was done."""
    if not spec_text:
        raise PlatformError(f"no spec: {SPEC_VARIABLE} is empty (run from a module's provisioner)")
    try:
        spec = json.loads(spec_text)
    except ValueError as error:
        raise PlatformError(f"{SPEC_VARIABLE} is not JSON: {error}") from None
    if not isinstance(spec, dict) or spec.get("kind") not in STEPS:
        raise PlatformError(f"unknown platform kind {spec.get('kind') if isinstance(spec, dict) else spec!r}")
    create, delete = STEPS[spec["kind"]]
    if action == "create":
        return create(spec)
    if action == "delete":
        return delete(spec) if delete else f"{spec['kind']} {spec.get('subject', '')}: nothing to delete".strip()
    raise PlatformError(f"unknown action {action!r} (create or delete)")


# ------------------------------------------------------------------------------------ what the lab reads back

_AVRO_TO_ICEBERG = {
    "int": "IntegerType",
    "long": "LongType",
    "string": "StringType",
    "double": "DoubleType",
    "float": "FloatType",
    "boolean": "BooleanType",
}


def iceberg_schema(avro_schema: str | dict[str, Any]) -> Any:
    """The Iceberg schema of an Avro record schema (a registry subject's): primitive fields, ``["null", T]``
    unions as optional columns, the others required."""
    from pyiceberg import types
    from pyiceberg.schema import Schema

    record = json.loads(avro_schema) if isinstance(avro_schema, str) else avro_schema
    if not isinstance(record, dict) or record.get("type") != "record":
        raise PlatformError("the schema is not an Avro record")
    fields = []
    for field_id, field in enumerate(record.get("fields", []), start=1):
        kind = field["type"]
        optional = isinstance(kind, list) and "null" in kind
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if not isinstance(kind, str) or kind not in _AVRO_TO_ICEBERG:
            raise PlatformError(f"field {field['name']}: Avro type {kind!r} is not mapped (primitives only)")
        iceberg_type = getattr(types, _AVRO_TO_ICEBERG[kind])()
        fields.append(types.NestedField(field_id, field["name"], iceberg_type, required=not optional))
    return Schema(*fields)


def latest_schema(registry_url: str, subject: str) -> dict[str, Any]:
    """The latest registered schema of a subject (what an ``http`` data source would have read), as a dict."""
    response = _http("GET", f"{registry_url}/subjects/{subject}/versions/latest")
    if response.status_code >= 400:
        raise PlatformError(f"no schema for {subject} in the registry: {_message(response)}")
    return json.loads(response.json()["schema"])


def stack_endpoints() -> dict[str, Any]:
    """The ``stack`` variable of lab 07.07's root: the endpoints its modules need, from delab.config (so no host,
    port or password is ever written in a .tf file)."""
    pg, kafka = config.postgres(), config.kafka()
    return {
        "connect_url": kafka.connect_url.rstrip("/"),
        "registry_url": config.schema_registry().ccompat_url,
        "pg_host": pg.host,
        "pg_port": pg.port,
        "cdc_user": pg.user,
    }
