"""An HTTP relay in front of the moto server that answers for a Kinesis stream as Kinesis does
across a reshard, which moto's own SplitShard and MergeShards do not: they move (split) or copy
(merge) the parents' records into the children, go on routing new records to the closed parent,
and a closed shard's reads never end (its NextShardIterator is never null).

The test makes the stream with every shard it will need, routes each record to a shard itself
(ExplicitHashKey), and declares the lineage:

* `hold_back(shard, ...)`: shards not created yet (children of a reshard to come): ListShards
  does not list them;
* `reshard(parents, children)`: the parents are closed (ListShards gives their
  EndingSequenceNumber; a GetRecords that finds nothing more in one answers a null
  NextShardIterator, as Kinesis does at a closed shard's end) and the children are listed with
  their ParentShardId (and AdjacentParentShardId for a merge);
* `expire(shard)`: a shard past the stream's retention, no longer listed.

`end_with_last_records = True` ends a closed shard on the page that holds its last record
(Kinesis may answer either way), not on an empty page after it.

Every GetShardIterator and GetRecords is logged with the shard it was for (`calls`), in order;
the relay knows a GetRecords' shard by the iterator it was given (one GetShardIterator or an
earlier GetRecords answered), so it reads nothing of moto's iterator format.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


class ReshardRelay:
    """The relay; `url` is its endpoint."""

    def __init__(self, target_url: str) -> None:
        self.target_url = target_url
        target = urlsplit(target_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._lock = threading.Lock()
        self._hidden: set[str] = set()
        self._closed: dict[str, str] = {}  # shard → its EndingSequenceNumber
        self._parents: dict[str, tuple[str, ...]] = {}
        self._shard_of: dict[str, str] = {}  # iterator → shard
        self.end_with_last_records = False
        # (operation, shard id) of every GetShardIterator and GetRecords, in order.
        self.calls: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "kinesis",
            endpoint_url=self.url,
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}),
        )

    def hold_back(self, *shards: str) -> None:
        with self._lock:
            self._hidden.update(shards)

    def reshard(self, stream: str, parents: tuple[str, ...], children: tuple[str, ...]) -> None:
        ending = {parent: self._last_sequence_number(stream, parent) for parent in parents}
        with self._lock:
            self._closed.update(ending)
            for child in children:
                self._hidden.discard(child)
                self._parents[child] = parents

    def expire(self, *shards: str) -> None:
        self.hold_back(*shards)

    def reads(self) -> list[str]:
        """The shard of each GetRecords, in order."""
        with self._lock:
            return [shard for operation, shard in self.calls if operation == "GetRecords"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _last_sequence_number(self, stream: str, shard: str) -> str:
        """The shard's last record's sequence number, asked of moto directly ("0": none)."""
        import boto3

        kinesis = boto3.client("kinesis", endpoint_url=self.target_url, region_name="us-east-1")
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        last = "0"
        while True:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            if not page["Records"]:
                return last
            last = page["Records"][-1]["SequenceNumber"]
            iterator = page["NextShardIterator"]

    def _answer(self, operation: str, request: dict[str, Any], answer: dict[str, Any]) -> None:
        """Rewrite moto's answer (a 200) into Kinesis' across the declared reshards."""
        with self._lock:
            if operation == "ListShards":
                answer["Shards"] = [
                    self._listed(s)
                    for s in answer.get("Shards", [])
                    if s["ShardId"] not in self._hidden
                ]
            elif operation == "GetShardIterator":
                shard = request["ShardId"]
                self.calls.append((operation, shard))
                self._shard_of[answer["ShardIterator"]] = shard
            elif operation == "GetRecords":
                shard = self._shard_of[request["ShardIterator"]]
                self.calls.append((operation, shard))
                records = answer.get("Records") or []
                last = records[-1]["SequenceNumber"] if records else None
                at_end = not records or (
                    self.end_with_last_records and last == self._closed.get(shard)
                )
                if shard in self._closed and at_end:
                    # Nothing more in a closed shard: Kinesis says it ended.
                    answer.pop("NextShardIterator", None)
                    answer["MillisBehindLatest"] = 0
                elif answer.get("NextShardIterator"):
                    self._shard_of[answer["NextShardIterator"]] = shard

    def _listed(self, shard: dict[str, Any]) -> dict[str, Any]:
        shard_id = shard["ShardId"]
        parents = self._parents.get(shard_id, ())
        shard.pop("ParentShardId", None)
        shard.pop("AdjacentParentShardId", None)
        if parents:
            shard["ParentShardId"] = parents[0]
        if len(parents) > 1:
            shard["AdjacentParentShardId"] = parents[1]
        if shard_id in self._closed:
            shard["SequenceNumberRange"]["EndingSequenceNumber"] = self._closed[shard_id]
        return shard

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802 — http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                connection = http.client.HTTPConnection(*relay._target, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    headers["Host"] = "{}:{}".format(*relay._target)
                    connection.request("POST", self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    kept = {
                        k: v
                        for k, v in response.getheaders()
                        if k.lower() in ("x-amzn-requestid", "x-amzn-errortype")
                    }
                finally:
                    connection.close()
                if response.status == 200 and data:
                    answer = json.loads(data)
                    relay._answer(operation, json.loads(body or b"{}"), answer)
                    data = json.dumps(answer).encode()
                self.send_response(response.status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                for name, value in kept.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@contextmanager
def reshard_relay(target_url: str) -> Iterator[ReshardRelay]:
    relay = ReshardRelay(target_url)
    try:
        yield relay
    finally:
        relay.close()
