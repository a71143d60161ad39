"""Every change that deletes data about a customer asks for SQLite's write-ahead log to be
emptied once it has committed (`Tx.erased`): a flow's runs and items deleted with its
integration (DeleteIntegration), and a flow's oldest failed runs pruned (a failed run's sealed
error can quote a customer's value). Before, they stayed in the -wal file's old frames until a later
erasure happened to truncate it, and with the keyring beside the database a sealed blob can be
opened. (An object evicted by MaxProfileObjectCount is not erased so: the quota making room,
like an object's replacement, which writes over the older one; objects.service `evict_oldest`.)"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.flows import runs as flow_runs
from openprofiles.flows.service import run_flow
from openprofiles.integrations.service import delete_integration, put_integration
from openprofiles.object_types.service import put_object_type
from openprofiles.settings import Settings
from openprofiles.store.schema import flow_item, flow_run

D = "wal"

LAST_ORDER_ONLY: dict[str, Any] = {
    "Description": "the customer's last order only",
    "AllowProfileCreation": True,
    "MaxProfileObjectCount": 1,
    "Fields": {
        "id": {"Source": "_source.id"},
        "email": {"Source": "_source.email", "ContentType": "EMAIL_ADDRESS"},
        "note": {"Source": "_source.note"},
    },
    "Keys": {
        "orderId": [{"StandardIdentifiers": ["UNIQUE"], "FieldNames": ["id"]}],
        "_email": [{"StandardIdentifiers": ["PROFILE"], "FieldNames": ["email"]}],
    },
}


@pytest.fixture
def services(sqlite_settings: Settings, tmp_path: Path) -> Iterator[Services]:
    settings = dataclasses.replace(
        sqlite_settings, flow_folder_roots=(tmp_path,), flow_folder_settle_seconds=0
    )
    built = build_services(settings)
    try:
        yield built
    finally:
        built.database.dispose()


def _files(services: Services) -> dict[str, bytes]:
    path = services.settings.sqlite_path
    wal = Path(f"{path}-wal")
    return {"database": path.read_bytes(), "wal": wal.read_bytes() if wal.exists() else b""}


def assert_erased_from_the_files(
    services: Services, secrets: list[bytes], erase: Callable[[], None]
) -> None:
    """The secrets are in the log before `erase`, and in neither file soon after it."""
    checkpointer = services.database.checkpointer
    assert checkpointer is not None
    before = _files(services)["wal"]
    for secret in secrets:
        assert secret in before
    erase()

    def gone() -> bool:
        files = _files(services)
        return not any(secret in content for secret in secrets for content in files.values())

    assert checkpointer.wait_for(gone, timeout=20), "the erased rows are still in the files"


def order(n: int) -> dict[str, Any]:
    return {"id": f"order-{n}", "email": "evicted@example.org", "note": f"note {n} " * 40}


def orders_flow(services: Services, folder: Path, file_name: str) -> str:
    """A domain with an OnDemand flow reading `folder`, which holds one order in `file_name`;
    the flow's integration's Uri."""
    make_domain(services, D)
    with services.write() as tx:
        put_object_type(tx, domain_name=D, name="Orders", params=LAST_ORDER_ONLY)
    folder.mkdir()
    (folder / file_name).write_text(json.dumps(order(1)) + "\n")
    definition = {
        "FlowName": "orders",
        "KmsArn": "arn:aws:kms:us-east-1:111122223333:key/local",
        "SourceFlowConfig": {
            "ConnectorType": "S3",
            "SourceConnectorProperties": {
                "S3": {"BucketName": "file://", "BucketPrefix": str(folder)}
            },
        },
        "Tasks": [],
        "TriggerConfig": {"TriggerType": "OnDemand"},
    }
    with services.write() as tx:
        return put_integration(
            tx, domain_name=D, uri=None, object_type_name="Orders", flow_definition=definition
        ).integration.uri


def test_a_deleted_flows_runs_and_items_leave_the_log(services: Services, tmp_path: Path) -> None:
    uri = orders_flow(services, tmp_path / "export", "customer-evicted@example.org.jsonl")
    run = run_flow(services, domain_name=D, flow_name="orders")
    assert run.status == "COMPLETED"
    with services.read() as tx:
        [item] = tx.conn.execute(select(flow_item.c.item_digest)).scalars()
        [run_id] = tx.conn.execute(select(flow_run.c.run_id)).scalars()

    def delete() -> None:
        with services.write() as tx:
            delete_integration(tx, domain_name=D, uri=uri)

    assert_erased_from_the_files(services, [bytes(item), run_id.encode()], delete)


def test_a_pruned_failed_run_leaves_the_log(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flow_runs, "RUNS_KEPT", 1)
    folder = tmp_path / "customer-evicted@example.org"
    orders_flow(services, folder, "orders.jsonl")
    away = folder.rename(tmp_path / "away")
    first = run_flow(services, domain_name=D, flow_name="orders")
    assert first.status == "FAILED"  # its sealed error names the missing folder
    with services.read() as tx:
        [error] = tx.conn.execute(select(flow_run.c.error_sealed)).scalars()
    away.rename(folder)

    def prune() -> None:
        second = run_flow(services, domain_name=D, flow_name="orders")
        assert second.status == "COMPLETED"

    assert_erased_from_the_files(services, [bytes(error), first.run_id.encode()], prune)
    with services.read() as tx:
        assert first.run_id not in tx.conn.execute(select(flow_run.c.run_id)).scalars().all()
