"""Ingestion throughput: contact-record-like objects through the one pipeline.

(a) in-process: the pipeline in batched transactions (`openprofiles ingest`'s code path);
(b) HTTP: PutProfileObject against `openprofiles serve` in a subprocess, half the objects from
    C concurrent boto3 clients (threads), half from C pre-signed client processes;
(c) raw SQLite: inserting the same rows (objects, object keys, profile keys, and the profiles
    created and changed per batch; sealed and digested beforehand, the store's tables and
    indexes as its schema declares them, its settings, no foreign-key checks) with executemany
    — the physical limit of the storage layer.

    .venv/bin/python benchmarks/ingest.py                       # 200,000 objects, 20,000 customers
    .venv/bin/python benchmarks/ingest.py --objects 20000 --customers 2000 --http-objects 4000
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import client, create_credential, presigned_rate, server, wrk_rate  # noqa: E402
from openprofiles.app import build_services  # noqa: E402
from openprofiles.domains.service import create_domain  # noqa: E402
from openprofiles.ingest.bulk import ingest_records  # noqa: E402
from openprofiles.object_types.service import put_object_type  # noqa: E402
from openprofiles.settings import Settings  # noqa: E402

CONTACTS: dict[str, Any] = {
    "Description": "Contact records",
    "AllowProfileCreation": True,
    "Fields": {
        "contactId": {"Source": "_source.ContactId"},
        "phone": {
            "Source": "_source.CustomerEndpoint.Address",
            "Target": "_profile.PhoneNumber",
            "ContentType": "PHONE_NUMBER",
        },
        "name": {"Source": "_source.Attributes.CustomerName", "Target": "_profile.FirstName"},
        "queue": {"Source": "_source.Queue.Name", "Target": "_profile.Attributes.LastQueue"},
    },
    "Keys": {
        "_ctrContactId": [
            {"StandardIdentifiers": ["PROFILE", "UNIQUE"], "FieldNames": ["contactId"]}
        ],
        "_phone": [{"StandardIdentifiers": ["PROFILE", "SECONDARY"], "FieldNames": ["phone"]}],
    },
}


def contact(customer: int, rng: random.Random) -> str:
    return json.dumps(
        {
            "ContactId": str(uuid.UUID(int=rng.getrandbits(128))),
            "Channel": "VOICE",
            "InitiationMethod": "INBOUND",
            "InitiationTimestamp": "2026-11-28T10:00:00Z",
            "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": f"+1206{customer:07d}"},
            "Queue": {"Name": rng.choice(["Sales", "Support", "Billing"])},
            "Agent": {"Username": f"agent{rng.randrange(50)}"},
            "Attributes": {"CustomerName": f"Customer {customer}"},
        }
    )


def setup_domain(data_dir: Path, name: str) -> None:
    services = build_services(Settings(data_dir=data_dir))
    try:
        wrapped = services.keys.new_domain_key(name, None)
        with services.write() as tx:
            create_domain(
                tx,
                domain_name=name,
                config={"DefaultExpirationDays": 366},
                key_id=wrapped.key_id,
                wrapped_key=wrapped.wrapped,
            )
            put_object_type(tx, domain_name=name, name="Contacts", params=CONTACTS)
    finally:
        services.database.dispose()


def in_process(data_dir: Path, records: list[str], batch_size: int) -> None:
    setup_domain(data_dir, "bench")
    # The settings `openprofiles ingest` runs with.
    services = build_services(Settings(data_dir=data_dir).for_bulk_load())
    try:
        summary = ingest_records(
            services,
            domain_name="bench",
            object_type_name="Contacts",
            records=records,
            batch_size=batch_size,
        )
    finally:
        services.database.dispose()
    print(
        f"(a) in-process pipeline: {summary.read} objects in {summary.seconds:.1f}s = "
        f"{summary.per_second:,.0f} objects/s ({summary.created_profiles} profiles created, "
        f"{summary.dead_lettered} dead-lettered)"
    )


def over_http(
    data_dir: Path, records: list[str], clients: int, port: int, workers: int, wrk_seconds: int
) -> None:
    """Half the records from `clients` boto3 clients (threads of this process: boto3's own
    cost included), the other half pre-signed from `clients` processes (the server's rate),
    then that half replayed by wrk for `wrk_seconds` (the server's rate with the clients'
    share of the cores mostly freed)."""
    setup_domain(data_dir, "benchhttp")
    key = create_credential(data_dir)
    half = len(records) // 2
    with server(data_dir, port, workers) as url:
        chunks = [records[:half][i::clients] for i in range(clients)]
        errors: list[BaseException] = []

        def work(chunk: list[str]) -> None:
            api = client(url, key)
            try:
                for body in chunk:
                    api.put_profile_object(
                        DomainName="benchhttp", ObjectTypeName="Contacts", Object=body
                    )
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise errors[0]
        path = "/domains/benchhttp/profiles/objects"
        requests = [
            ("PUT", path, json.dumps({"ObjectTypeName": "Contacts", "Object": body}).encode())
            for body in records[half:]
        ]
        presigned = presigned_rate(url, key, clients, requests)
        # The same objects again (updates of stored objects, as re-deliveries are).
        measured = wrk_rate(url, key, requests, clients, wrk_seconds)
    print(
        f"(b) PutProfileObject over HTTP, {workers} server processes, {clients} boto3 clients:"
        f" {half} objects in "
        f"{elapsed:.1f}s = {half / elapsed:,.0f} requests/s; {clients} pre-signed clients: "
        f"{len(records) - half} objects, {presigned:,.0f} requests/s; wrk with {clients} "
        "connections, the pre-signed objects replayed: "
        + (f"{measured:,.0f} requests/s" if measured else "wrk not installed (apt-get install wrk)")
    )


def raw_sqlite(data_dir: Path, records: list[str], customers: int, batch_size: int) -> None:
    """The rows the pipeline writes, sealed and digested beforehand, inserted with executemany
    in the same batches: per object its row, two object-key rows and its `_ctrContactId`
    profile-key row; per customer first seen, its profile row and the derived `_profileId`,
    `_phone` and `_fullName` key rows; per batch, one update of every profile whose fields
    changed in it (the pipeline writes a changed profile once per batch)."""
    from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
    from sqlalchemy.schema import CreateIndex, CreateTable

    from openprofiles.crypto.domain_keys import DomainCipher
    from openprofiles.settings import BULK_SQLITE_CACHE_MIB
    from openprofiles.store.checkpoint import Checkpointer
    from openprofiles.store.schema import profile, profile_key, profile_object, profile_object_key

    cipher = DomainCipher(b"k" * 32, "raw")
    now = "2026-11-28 10:00:00.000000"
    # As the pipeline fills them: the domain's DefaultExpirationDays (setup_domain), the
    # record's InitiationTimestamp, and the order of the row in its batch's transaction.
    expires = "2027-11-29 10:00:00.000000"
    batches = []
    profile_of: dict[str, str] = {}
    queue_of: dict[str, str] = {}
    for first in range(0, len(records), batch_size):
        objects, object_keys, profile_keys, new_profiles, changed = [], [], [], [], {}
        for raw in records[first : first + batch_size]:
            obj = json.loads(raw)
            phone = obj["CustomerEndpoint"]["Address"]
            name = obj["Attributes"]["CustomerName"]
            queue = obj["Queue"]["Name"]
            pid = profile_of.get(phone)
            if pid is None:
                pid = profile_of[phone] = uuid.uuid4().hex
                new_profiles.append((pid, phone, name, queue))
            elif queue_of[phone] != queue:
                changed[pid] = (phone, name, queue)
            queue_of[phone] = queue
            unique = cipher.digest("_ctrContactId", obj["ContactId"])
            sealed = cipher.seal_record("profile_object", unique.hex(), {"object": raw})
            objects.append(
                ("raw", "Contacts", unique, pid, sealed, len(raw), now, now, expires, now)
                + (len(objects) + 1,)
            )
            object_keys += [
                ("raw", "Contacts", unique, "_ctrContactId", unique),
                ("raw", "Contacts", unique, "_phone", cipher.digest("_phone", phone)),
            ]
            sealed_key = cipher.seal_record(
                "profile_key", unique.hex(), {"value": obj["ContactId"]}
            )
            profile_keys.append(("raw", "_ctrContactId", unique, pid, "Contacts", sealed_key))
        profiles, updates = [], []
        for pid, phone, name, queue in new_profiles:
            profiles.append(("raw", pid, _sealed_profile(cipher, pid, phone, name, queue), now))
            for key_name, value in (("_profileId", pid), ("_phone", phone), ("_fullName", name)):
                digest = cipher.digest(key_name, value)
                sealed_value = cipher.seal_record("profile_key", pid + key_name, {"value": value})
                profile_keys.append(("raw", key_name, digest, pid, "profile", sealed_value))
        for pid, (phone, name, queue) in changed.items():
            updates.append((_sealed_profile(cipher, pid, phone, name, queue), now, "raw", pid))
        batches.append((objects, object_keys, profile_keys, profiles, updates))
    path = data_dir / "raw.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    # The store's own settings (store/database.py) as the file loaders use them: WAL, NORMAL
    # sync, their page cache, checkpoints off the commit path on the checkpointer's thread.
    db.execute(f"PRAGMA cache_size={-BULK_SQLITE_CACHE_MIB * 1024}")
    db.executescript(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;"
    )
    # The tables and indexes from the store's schema, so that (c) pays for the same B-trees as
    # the pipeline (and an old checkout's, run with PYTHONPATH, for its own).
    for table in (profile, profile_object, profile_object_key, profile_key):
        db.execute(str(CreateTable(table).compile(dialect=sqlite_dialect())))
        for index in table.indexes:
            db.execute(str(CreateIndex(index).compile(dialect=sqlite_dialect())))
    checkpointer = Checkpointer(lambda: sqlite3.connect(path, isolation_level=None))
    started = time.perf_counter()
    for objects, object_keys, profile_keys, profiles, updates in batches:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO profile (domain_name, profile_id, sealed, version, merged_into, "
            "created_at, updated_at) VALUES (?,?,?,1,NULL,?,?)",
            [(*p, p[-1]) for p in profiles],
        )
        db.executemany(
            "UPDATE profile SET sealed = ?, version = version + 1, updated_at = ? "
            "WHERE domain_name = ? AND profile_id = ?",
            updates,
        )
        db.executemany(
            "INSERT INTO profile_object (domain_name, object_type_name, unique_digest, "
            "profile_id, sealed, size, created_at, updated_at, expires_at, contact_start, "
            "write_order) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            objects,
        )
        db.executemany(
            "INSERT INTO profile_object_key (domain_name, object_type_name, unique_digest, "
            "key_name, digest) VALUES (?,?,?,?,?)",
            object_keys,
        )
        db.executemany(
            "INSERT OR IGNORE INTO profile_key (domain_name, key_name, digest, profile_id, "
            "origin, value_sealed) VALUES (?,?,?,?,?,?)",
            profile_keys,
        )
        db.execute("COMMIT")
        checkpointer.nudge()
    elapsed = time.perf_counter() - started
    checkpointer.close()
    db.close()
    print(
        f"(c) raw SQLite inserts of the same rows: {len(records)} objects in {elapsed:.2f}s = "
        f"{len(records) / elapsed:,.0f} objects/s"
    )


def _sealed_profile(cipher: Any, pid: str, phone: str, name: str, queue: str) -> bytes:
    """A sealed profile shaped like the pipeline's (fields, and which object type set each)."""
    source = {"type": "Contacts", "priority": None}
    payload = {
        "fields": {"PhoneNumber": phone, "FirstName": name, "Attributes": {"LastQueue": queue}},
        "manual": [],
        "sources": {"PhoneNumber": source, "FirstName": source, "Attributes.LastQueue": source},
    }
    return cipher.seal_record("profile", pid, payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--http-objects", type=int, default=None, help="objects for (b) (default: --objects)"
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=1, help="server processes for (b)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--wrk-seconds", type=int, default=10, help="length of the wrk run")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c")
    args = parser.parse_args()
    rng = random.Random(42)
    records = [contact(rng.randrange(args.customers), rng) for _ in range(args.objects)]
    base = args.data_dir or Path(tempfile.mkdtemp(prefix="op-bench-ingest-"))
    skip = set(args.skip.split(","))
    print(f"{args.objects} objects for {args.customers} customers; data in {base}")
    try:
        if "a" not in skip:
            in_process(base / "inproc", records, args.batch_size)
        if "b" not in skip:
            http_records = records[: args.http_objects or args.objects]
            over_http(
                base / "http",
                http_records,
                args.clients,
                args.port,
                args.workers,
                args.wrk_seconds,
            )
        if "c" not in skip:
            (base / "raw").mkdir(parents=True, exist_ok=True)
            raw_sqlite(base / "raw", records, args.customers, args.batch_size)
    finally:
        if args.data_dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
