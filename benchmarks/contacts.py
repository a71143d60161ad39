"""Contact records at scale: POST /contact-records in batches, and the file loader.

Generates N contact records (70 % voice by phone, 30 % chat by email, C distinct customers),
then reports records/s through `POST /contact-records` (batches of B, SigV4-signed, against
`openprofiles serve` on loopback), records/s from a file (`openprofiles ingest
contact-records`), and the p50/p99 time from a contact-start event (`POST /contact-events`) to
its profile being found by SearchProfiles(_ctrContactId) (and the time to the event's own
response, the rest being the boto3 SearchProfiles call).

    .venv/bin/python benchmarks/contacts.py                       # 100,000 records
    .venv/bin/python benchmarks/contacts.py --records 20000 --customers 3000 --events 500
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from _support import BIN, client, create_credential, server, summary_ms  # noqa: E402

INSTANCE = "arn:aws:connect:us-east-1:111122223333:instance/0bench00-0000-4000-8000-000000000000"
DOMAIN = "contacts-bench"


def record(i: int, customers: int, rng: random.Random) -> dict[str, object]:
    customer = rng.randrange(customers)
    voice = rng.random() < 0.7
    day = 1 + i % 28
    return {
        "AWSContactTraceRecordFormatVersion": "2017-03-10",
        "ContactId": f"{uuid.UUID(int=i):}",
        "InstanceARN": INSTANCE,
        "Channel": "VOICE" if voice else "CHAT",
        "CustomerEndpoint": (
            {"Address": f"+1206{customer:07d}", "Type": "TELEPHONE_NUMBER"}
            if voice
            else {"Address": f"customer{customer}@example.com", "Type": "EMAIL_ADDRESS"}
        ),
        "InitiationTimestamp": f"2024-03-{day:02d}T10:00:00Z",
        "DisconnectTimestamp": f"2024-03-{day:02d}T10:04:00Z",
        "LastUpdateTimestamp": f"2024-03-{day:02d}T10:05:00Z",
        "Agent": {"Username": f"agent{i % 50}"},
        "Queue": {"Name": "BasicQueue"},
        "DisconnectReason": "CUSTOMER_DISCONNECT",
    }


def signed_post(http: httpx.Client, url: str, key: tuple[str, str], body: bytes) -> httpx.Response:
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(*key), "profile", "us-east-1").add_auth(request)
    return http.post(url, content=body, headers=dict(request.headers.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=15_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--port", type=int, default=8732)
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/.work/contacts"))
    args = parser.parse_args()
    rng = random.Random(7)
    records = [record(i, args.customers, rng) for i in range(args.records)]

    for part in ("http", "file"):
        shutil.rmtree(args.data_dir / part, ignore_errors=True)
        (args.data_dir / part).mkdir(parents=True)
    http_dir, file_dir = args.data_dir / "http", args.data_dir / "file"

    # Over HTTP, in batches.
    key = create_credential(http_dir)
    with server(http_dir, args.port) as url:
        boto = client(url, key)
        boto.create_domain(DomainName=DOMAIN, DefaultExpirationDays=365)
        boto.put_integration(DomainName=DOMAIN, Uri=INSTANCE)
        with httpx.Client(timeout=120) as http:
            started = time.perf_counter()
            accepted = 0
            for offset in range(0, len(records), args.batch):
                body = json.dumps(records[offset : offset + args.batch]).encode()
                accepted += signed_post(http, f"{url}/contact-records", key, body).json()[
                    "Accepted"
                ]
            seconds = time.perf_counter() - started
            print(
                f"POST /contact-records: {accepted}/{len(records)} accepted in {seconds:.1f}s "
                f"= {len(records) / seconds:,.0f} records/s (batches of {args.batch})"
            )
            latencies, posts = [], []
            for i in range(args.events):
                contact_id = f"live-{i}"
                customer = rng.randrange(args.customers)
                event = {
                    "ContactId": contact_id,
                    "InitiationTimestamp": "2024-04-01T10:00:00Z",
                    "Channel": "VOICE",
                    "InstanceARN": INSTANCE,
                    "CustomerEndpoint": {
                        "Address": f"+1206{customer:07d}",
                        "Type": "TELEPHONE_NUMBER",
                    },
                }
                began = time.perf_counter()
                signed_post(http, f"{url}/contact-events", key, json.dumps(event).encode())
                posts.append(time.perf_counter() - began)
                while not boto.search_profiles(
                    DomainName=DOMAIN, KeyName="_ctrContactId", Values=[contact_id]
                )["Items"]:
                    pass
                latencies.append(time.perf_counter() - began)
            print(f"contact-start event -> searchable: {summary_ms(latencies)}")
            print(f"  of which POST /contact-events answered: {summary_ms(posts)}")

    # From a file.
    path = args.data_dir / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    key = create_credential(file_dir)
    with server(file_dir, args.port + 1) as url:
        boto = client(url, key)
        boto.create_domain(DomainName=DOMAIN, DefaultExpirationDays=365)
        boto.put_integration(DomainName=DOMAIN, Uri=INSTANCE)
    out = subprocess.run(
        [
            str(BIN / "openprofiles"),
            "ingest",
            "contact-records",
            str(path),
            "--json",
            "--data-dir",
            str(file_dir),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    print(
        f"openprofiles ingest contact-records: {summary['Accepted']}/{summary['Read']} accepted "
        f"in {summary['Seconds']:.1f}s = {summary['RecordsPerSecond']:,.0f} records/s"
    )


if __name__ == "__main__":
    main()
