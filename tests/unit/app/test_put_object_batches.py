"""PutProfileObject calls the event loop runs in one turn are applied as one pipeline batch
(objects.coalesce), each still answered on its own — through the real ASGI app on SQLite, with
signed requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import text
from tests.support.event_loop import run_in_fresh_thread

from openprofiles.app import create_app
from openprofiles.auth.credentials import create_credential
from openprofiles.dlq.service import list_messages
from openprofiles.objects.coalesce import turn_queue
from openprofiles.settings import Settings

DOMAIN = "batches"
CONTACTS = {
    "Description": "Contact records",
    "AllowProfileCreation": True,
    "Fields": {
        "contactId": {"Source": "_source.ContactId"},
        "phone": {
            "Source": "_source.Phone",
            "Target": "_profile.PhoneNumber",
            "ContentType": "PHONE_NUMBER",
        },
        "note": {"Source": "_source.Note", "Target": "_profile.Attributes.Note"},
    },
    "Keys": {
        "_ctrContactId": [
            {"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["contactId"]}
        ],
        "_phone": [{"StandardIdentifiers": ["PROFILE", "SECONDARY"], "FieldNames": ["phone"]}],
    },
}


class Api:
    """Signed calls to the app's ASGI interface, several at once on one event loop."""

    def __init__(self, app: Any, key: Credentials) -> None:
        self.app = app
        self.signer = botocore.auth.SigV4Auth(key, "profile", "us-east-1")

    async def call(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        request = AWSRequest(
            method=method,
            url=f"http://127.0.0.1:8000{path}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        self.signer.add_auth(request)
        headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [*headers, (b"host", b"127.0.0.1:8000")],
        }
        chunks = [data]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": chunks.pop() if chunks else b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        body_bytes = b"".join(m.get("body", b"") for m in sent[1:])
        return sent[0]["status"], json.loads(body_bytes) if body_bytes else None

    async def put(self, record: dict[str, Any], type_name: str = "Contacts") -> tuple[int, Any]:
        return await self.call(
            "PUT",
            f"/domains/{DOMAIN}/profiles/objects",
            {"ObjectTypeName": type_name, "Object": json.dumps(record)},
        )


@pytest.fixture
def api(sqlite_settings: Settings) -> Iterator[Api]:
    app = create_app(sqlite_settings)
    services = app.state.services
    with services.write() as tx:
        issued = create_credential(tx, role="admin")
    api = Api(app, Credentials(issued.access_key_id, issued.secret_access_key))

    async def setup() -> None:
        status, _ = await api.call("POST", f"/domains/{DOMAIN}", {"DefaultExpirationDays": 30})
        assert status == 200
        status, _ = await api.call("PUT", f"/domains/{DOMAIN}/object-types/Contacts", CONTACTS)
        assert status == 200

    run_in_fresh_thread(setup())
    try:
        yield api
    finally:
        services.database.dispose()


def record(contact: str, phone: str | None, note: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"ContactId": contact, "Note": note}
    if phone is not None:
        out["Phone"] = phone
    return out


def test_the_puts_of_one_turn_are_one_batch_and_each_gets_its_own_answer(api: Api) -> None:
    async def scenario() -> tuple[list[tuple[int, Any]], int, int]:
        queue = turn_queue(asyncio.get_running_loop())
        answers = list(
            await asyncio.gather(
                api.put(record("c-1", "+12065550101", "first")),
                api.put(record("c-2", "+12065550101", "second")),
                api.put(record("c-3", "+12065550102")),
                # No key at all: refused (400) and kept as a dead letter (objects.answers).
                api.put({"Note": "no keys at all"}),
                api.put(record("c-4", "+12065550101", "third")),
            )
        )
        applied = queue.applied
        status, found = await api.call(
            "POST",
            f"/domains/{DOMAIN}/profiles/search",
            {"KeyName": "_phone", "Values": ["+12065550101"]},
        )
        assert status == 200
        (profile,) = found["Items"]  # one profile: the later records found the first's
        status, listed = await api.call(
            "POST",
            f"/domains/{DOMAIN}/profiles/objects",
            {"ObjectTypeName": "Contacts", "ProfileId": profile["ProfileId"]},
        )
        assert status == 200
        assert profile["Attributes"]["Note"] == "third"  # applied in the order they came
        return answers, applied, len(listed["Items"])

    answers, applied, listed = run_in_fresh_thread(scenario())
    assert [status for status, _ in answers] == [200, 200, 200, 400, 200]
    keys = [body["ProfileObjectUniqueKey"] for status, body in answers if status == 200]
    assert len(set(keys)) == 4
    assert applied == 1
    assert listed == 3
    services = api.app.state.services
    with services.read() as tx:
        letters = list_messages(tx, domain_name=DOMAIN)
    assert [letter.category for letter in letters] == ["missing_key"]
    refused = answers[3][1]["Message"]
    assert refused.endswith(f"kept in the dead-letter queue as {letters[0].message_id}.")


def test_an_unknown_object_type_fails_its_own_requests_only(api: Api) -> None:
    async def scenario() -> list[tuple[int, Any]]:
        return list(
            await asyncio.gather(
                api.put(record("c-1", "+12065550101"), type_name="Nope"),
                api.put(record("c-2", "+12065550102")),
                api.put(record("c-3", "+12065550103"), type_name="Nope"),
            )
        )

    (first, good, third) = run_in_fresh_thread(scenario())
    assert good[0] == 200
    for status, body in (first, third):
        assert status == 404
        assert "Nope" in body["Message"]


def test_a_record_that_breaks_its_batch_fails_alone(api: Api) -> None:
    """A fault no rejection covers (here a trigger refusing one stored size) fails the batch's
    write; the records are then applied one at a time, and only that one fails."""
    services = api.app.state.services
    broken = json.dumps(record("c-2", "+12065550102", "x" * 50))
    with services.write() as tx:
        tx.conn.execute(
            text(
                "CREATE TRIGGER refuse_one_size BEFORE INSERT ON profile_object "
                f"WHEN NEW.size = {len(broken)} BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )

    async def scenario() -> list[tuple[int, Any]]:
        return list(
            await asyncio.gather(
                api.put(record("c-1", "+12065550101")),
                api.put(json.loads(broken)),
                api.put(record("c-3", "+12065550103")),
            )
        )

    first, bad, third = run_in_fresh_thread(scenario())
    assert (first[0], bad[0], third[0]) == (200, 500, 200)
    assert bad[1]["Message"].startswith("An internal error occurred")

    async def search(phone: str) -> int:
        status, found = await api.call(
            "POST",
            f"/domains/{DOMAIN}/profiles/search",
            {"KeyName": "_phone", "Values": [phone]},
        )
        assert status == 200
        return len(found["Items"])

    async def counts() -> list[int]:
        return [await search(p) for p in ("+12065550101", "+12065550102", "+12065550103")]

    # Nothing of the broken record was written; the others were.
    assert run_in_fresh_thread(counts()) == [1, 0, 1]
