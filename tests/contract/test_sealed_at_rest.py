"""No personal value appears in clear anywhere in the stored data: not in the SQLite files
(database, WAL, shared memory) and not in any PostgreSQL table. Profiles, their keys and match
features, and a flow's stored traces: its definition (a Filter task comparing a field with an
email), the items it read (a file named after a customer) and a run's error (naming them). A
member of staff's username (an e-mail address) and their session, and why a dead letter's send
to its queue failed (a queue's refusal quoting a value)."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from sqlalchemy import inspect, text

from openprofiles.profiles import service as profiles
from openprofiles.store.database import Database


def _markers() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8].upper()
    return {
        "FirstName": f"Zorblax{tag}",
        "LastName": f"Quimby{tag}",
        "EmailAddress": f"marker{tag}@example.org",
        "PhoneNumber": "+1 415 555 0199",
        "AccountNumber": f"ACCT{tag}",
        "AdditionalInformation": f"secret-note-{tag}",
    }


def _store_profiles(services, markers: dict[str, str]) -> None:
    from openprofiles.context import Principal, RequestContext
    from openprofiles.domains.handlers import create_domain

    ctx = RequestContext(services=services, principal=Principal("test", "admin"))
    # Matching enabled: the profile's match features (identity.ml_features) are stored too.
    create_domain(
        ctx, {"DomainName": "sealed", "DefaultExpirationDays": 5, "Matching": {"Enabled": True}}
    )
    with services.write() as tx:
        record = profiles.create_profile(
            tx,
            domain_name="sealed",
            fields={
                **markers,
                "Address": {"City": markers["LastName"] + "ville"},
                "Attributes": {"note": markers["AdditionalInformation"]},
            },
        )
        profiles.add_profile_key(
            tx,
            domain_name="sealed",
            profile_id=record.profile_id,
            key_name="crm",
            values=[markers["AccountNumber"] + "-crm"],
        )
        profiles.update_profile(
            tx,
            domain_name="sealed",
            profile_id=record.profile_id,
            changes={"MiddleName": markers["FirstName"] + "middle"},
        )


def _store_flow(services, markers: dict[str, str]) -> None:
    """A flow whose Filter compares the email with a customer's, reading a folder named after
    one (in the default flow root, DATA_DIR/flows) that holds a file named after their email;
    a second run fails because the folder is gone, its error naming the folder."""
    from openprofiles.flows.service import run_flow
    from openprofiles.integrations.service import put_integration

    folder = services.settings.data_dir / "flows" / markers["LastName"]
    folder.mkdir(parents=True)
    record = {"id": 1, "email": markers["EmailAddress"], "name": markers["FirstName"]}
    (folder / f"{markers['EmailAddress']}.jsonl").write_text(json.dumps(record) + "\n")
    definition = {
        "FlowName": "crm",
        "KmsArn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "SourceFlowConfig": {
            "ConnectorType": "S3",
            "SourceConnectorProperties": {
                "S3": {"BucketName": "file://", "BucketPrefix": str(folder)}
            },
        },
        "Tasks": [
            {
                "TaskType": "Filter",
                "SourceFields": ["email"],
                "ConnectorOperator": {"S3": "NOT_EQUAL_TO"},
                "TaskProperties": {"VALUE": markers["EmailAddress"]},
            }
        ],
        "TriggerConfig": {"TriggerType": "OnDemand"},
    }
    with services.write() as tx:
        put_integration(
            tx,
            domain_name="sealed",
            uri=None,
            object_type_name="Zendesk-users",
            flow_definition=definition,
        )
    read = run_flow(services, domain_name="sealed", flow_name="crm", complete=False)
    # The file was read (and checkpointed), its record filtered out.
    assert (read.status, read.items_read, read.records_filtered) == ("COMPLETED", 1, 1)
    shutil.rmtree(folder)
    failed = run_flow(services, domain_name="sealed", flow_name="crm")
    assert failed.status == "FAILED" and markers["LastName"] in (failed.error or "")


def _store_staff_and_send_failure(services, markers: dict[str, str]) -> None:
    """A web user named by an e-mail address, signed in; a dead letter whose send to SQS the
    queue refused, quoting the reason's value (the e-mail address)."""
    from openprofiles.dlq import service as dlq
    from openprofiles.users import service as users

    with services.write() as tx:
        users.create_user(tx, username=_staff(markers), password="long enough", role="admin")
        users.create_session(tx, username=_staff(markers))
        letter = dlq.put(
            tx,
            domain_name="sealed",
            object_type_name="Crm",
            object_json="{}",
            reason="no profile",
            category="no_profile",
            sink_error=dlq.SQS_PENDING,
        )
        refusal = f"SQS refused the message: Value {markers['EmailAddress']} is invalid"
        dlq.settle_sends(tx, domain_name="sealed", sent=[], failed={refusal: [letter.message_id]})
        assert dlq.get(tx, domain_name="sealed", message_id=letter.message_id).sink_error == (
            refusal
        )
        assert [u.username for u in users.list_users(tx)] == [_staff(markers)]


def _staff(markers: dict[str, str]) -> str:
    return f"staff.{markers['LastName']}@example.net"


def _assert_features_stored(services) -> None:
    """The checks below cover the match features only if some were written."""
    from sqlalchemy import func, select

    from openprofiles.store.schema import ml_feature

    with services.read() as tx:
        assert tx.conn.execute(select(func.count()).select_from(ml_feature)).scalar_one() == 1


def _needles(markers: dict[str, str]) -> list[bytes]:
    values = [v for v in markers.values()]
    values += ["4155550199", "+14155550199", markers["EmailAddress"].lower(), _staff(markers)]
    return [v.encode() for v in values] + [v.lower().encode() for v in values]


def test_sqlite_files_hold_no_marker(sqlite_settings):
    from openprofiles.app import build_services

    services = build_services(sqlite_settings)
    markers = _markers()
    _store_profiles(services, markers)
    _store_flow(services, markers)
    _store_staff_and_send_failure(services, markers)
    _assert_features_stored(services)
    # Read the database, WAL and shared-memory files raw while open, and again after the
    # last connection closed (which checkpoints the WAL into the database file).
    files = sqlite_settings.data_dir.glob("openprofiles.sqlite3*")
    blob = b"".join(f.read_bytes() for f in files)
    services.database.dispose()
    blob += b"".join(f.read_bytes() for f in sqlite_settings.data_dir.glob("openprofiles.sqlite3*"))
    # The test is only meaningful if the data really is in these files.
    assert b"sealed" in blob
    for needle in _needles(markers):
        assert needle not in blob, f"{needle!r} found in clear in the SQLite files"


@pytest.mark.postgres
def test_postgres_tables_hold_no_marker(tmp_path):
    from tests.support.backends import postgres_schema_url

    from openprofiles.app import build_services
    from openprofiles.settings import Settings

    with postgres_schema_url() as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        services = build_services(settings)
        markers = _markers()
        _store_profiles(services, markers)
        _store_flow(services, markers)
        _store_staff_and_send_failure(services, markers)
        _assert_features_stored(services)
        db: Database = services.database
        dump = []
        with db.engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    dump.append(repr(tuple(row)).encode())
        services.database.dispose()
        blob = b"\n".join(dump)
        assert b"sealed" in blob
        for needle in _needles(markers):
            assert needle not in blob, f"{needle!r} found in clear in PostgreSQL"
