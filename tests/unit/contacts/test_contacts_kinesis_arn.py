"""The Kinesis connector given a stream's ARN instead of its name, against moto's server mode.

A session's note: the Kinesis client was made in OPENPROFILES_AWS_REGION (else
OPENPROFILES_REGION), never in the stream's, so a stream of another region could not be read at
all (moto, like AWS, keeps regions apart: the name alone finds nothing there). Named by its ARN,
the stream is read in the ARN's region, each call given the StreamARN; its checkpoints are those
it has when read by name, and an ARN that is not a stream's is refused at the start (exit 2).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from tests.unit.integrations.integ_helpers import associate, ctr, make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.connectors.kinesis import KinesisContactRecords
from openprofiles.context import Services
from openprofiles.dlq.service import list_messages
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings
from openprofiles.store.schema import stream_checkpoint

# The region the settings name, and the stream's, which is another.
SETTINGS_REGION = "us-east-1"
STREAM_REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


@pytest.fixture
def at_moto(settings: Settings, moto_url: str) -> Iterator[Services]:
    """Services whose Kinesis client the connector makes itself (none is passed to it): moto's
    endpoint, in SETTINGS_REGION (OPENPROFILES_AWS_REGION and OPENPROFILES_REGION both)."""
    built = build_services(
        replace(
            settings,
            kinesis_endpoint_url=moto_url,
            region=SETTINGS_REGION,
            aws_region=SETTINGS_REGION,
        )
    )
    try:
        make_domain(built, "arns")
        associate(built, "arns")
        yield built
    finally:
        built.database.dispose()


def new_stream(moto_url: str, region: str) -> tuple[Any, str, str]:
    """A one-shard stream in `region`: (a client of that region, its name, its ARN)."""
    kinesis = boto3.client("kinesis", endpoint_url=moto_url, region_name=region)
    name = f"ctr-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    return kinesis, name, arn


def put(kinesis: Any, name: str, *records: dict[str, Any]) -> None:
    for record in records:
        kinesis.put_record(StreamName=name, Data=json.dumps(record).encode(), PartitionKey="p")


def found(services: Services, contact_id: str) -> int:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name="arns", criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
    return len(page)


def test_a_stream_of_another_region_is_read_by_its_arn(at_moto: Services, moto_url: str) -> None:
    kinesis, name, arn = new_stream(moto_url, STREAM_REGION)
    assert f":{STREAM_REGION}:" in arn
    put(kinesis, name, ctr("e0"), ctr("e1"))

    # By name, in the settings' region: no such stream there (the note's bug).
    by_name = KinesisContactRecords(at_moto, name).poll_once()
    assert (by_name.stream_records, by_name.failed) == (0, 1)

    by_arn = KinesisContactRecords(at_moto, arn)
    first = by_arn.poll_once()

    assert (first.stream_records, first.accepted, first.failed) == (2, 2, 0)
    assert found(at_moto, "e0") == found(at_moto, "e1") == 1
    put(kinesis, name, ctr("e2"))
    assert (by_arn.poll_once().stream_records, found(at_moto, "e2")) == (1, 1)
    with at_moto.read() as tx:
        saved = tx.conn.execute(select(stream_checkpoint)).all()
    # Kept under the stream's name, with the identity DescribeStreamSummary gave.
    assert [(c.stream_name, c.stream_arn) for c in saved] == [(name, arn)]


def test_by_name_and_by_arn_read_on_from_the_same_checkpoints(
    at_moto: Services, moto_url: str
) -> None:
    """A connector started by name, then by ARN, then by name again: each reads on from where
    the one before stopped, and a record rejected once has one dead letter (its origin names the
    stream by name, however it was read)."""
    kinesis, name, arn = new_stream(moto_url, SETTINGS_REGION)
    put(
        kinesis,
        name,
        ctr("n0"),
        ctr("bad", CustomerEndpoint={"Address": "n/a", "Type": "TELEPHONE_NUMBER"}),
    )

    first = KinesisContactRecords(at_moto, name).poll_once()
    assert (first.stream_records, first.accepted, first.rejected) == (2, 1, 1)

    put(kinesis, name, ctr("a0"))
    second = KinesisContactRecords(at_moto, arn).poll_once()
    assert (second.stream_records, second.accepted, second.rejected) == (1, 1, 0)

    put(kinesis, name, ctr("n1"))
    third = KinesisContactRecords(at_moto, name).poll_once()
    assert (third.stream_records, third.accepted) == (1, 1)

    assert found(at_moto, "n0") == found(at_moto, "a0") == found(at_moto, "n1") == 1
    with at_moto.read() as tx:
        saved = tx.conn.execute(select(stream_checkpoint)).all()
        [letter] = list_messages(tx, domain_name="arns")
    assert [(c.stream_name, c.stream_arn) for c in saved] == [(name, arn)]
    assert f"Kinesis stream {name}, shard" in (letter.origin or "")


def test_the_command_reads_a_stream_of_another_region_by_its_arn(
    settings: Settings, at_moto: Services, moto_url: str
) -> None:
    kinesis, name, arn = new_stream(moto_url, STREAM_REGION)
    put(kinesis, name, ctr("c0"), ctr("c1"))
    storage = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        storage += ["--database-url", settings.database_url]
    command = ["connectors", "kinesis", *storage, "--endpoint-url", moto_url, "--once"]
    regions = {"OPENPROFILES_REGION": SETTINGS_REGION, "OPENPROFILES_AWS_REGION": SETTINGS_REGION}

    by_name = CliRunner(env=regions).invoke(main, [*command, "--stream", name])
    by_arn = CliRunner(env=regions).invoke(main, [*command, "--stream", arn])

    assert by_name.exit_code == 1, by_name.output
    assert "1 Kinesis calls failed" in by_name.output
    assert by_arn.exit_code == 0, by_arn.output
    assert by_arn.output.startswith("2 stream records: 2 contact records accepted")
    assert found(at_moto, "c0") == found(at_moto, "c1") == 1


ACCOUNT = "123456789012"


@pytest.mark.parametrize(
    ("arn", "said"),
    [
        (f"arn:aws:sqs:us-east-1:{ACCOUNT}:stream/s", "of the service 'sqs'"),
        (f"arn:aws:kinesis::{ACCOUNT}:stream/s", "names no region"),
        (f"arn:aws:kinesis:us-east-1:{ACCOUNT}:table/s", "not a stream's ARN"),
        (f"arn:aws:kinesis:us-east-1:{ACCOUNT}:s", "not a stream's ARN"),
        (f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/", "not a stream's ARN"),
        (f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/s/consumer/c:1700000000", "consumer's"),
        (f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/a b", "not a stream's name"),
        ("arn:aws:kinesis:us-east-1:1234:stream/s", "not an AWS account id"),
        # Arabic-Indic digits: `\d` took them, in the account and in botocore's region patterns.
        ("arn:aws:kinesis:us-east-1:١٢٣٤٥٦٧٨٩٠١٢:stream/s", "not an AWS account id"),
        (f"arn:aws:kinesis:us-east-١:{ACCOUNT}:stream/s", "not a region of the partition 'aws'"),
        (f"arn:aws:kinesis:us-éast-1:{ACCOUNT}:stream/s", "not a region of the partition 'aws'"),
        (f"arn:aws:kinesis:cn-north-1:{ACCOUNT}:stream/s", "not a region of the partition 'aws'"),
        (f"arn:amazon:kinesis:us-east-1:{ACCOUNT}:stream/s", "partition 'amazon'"),
        ("arn:aws:kinesis:us-east-1:stream/s", "not an ARN of the form"),
    ],
)
def test_an_arn_that_is_not_a_streams_is_refused_at_the_start(
    tmp_path: Any, arn: str, said: str
) -> None:
    # No data dir: nothing is opened before the option is checked.
    command = ["connectors", "kinesis", "--data-dir", str(tmp_path / "none"), "--once"]

    refused = CliRunner().invoke(main, [*command, "--stream", arn])

    assert refused.exit_code == 2, refused.output
    assert "Invalid value for '--stream'" in refused.output
    assert said in refused.output
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("arn", "parts"),
    [
        (f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/ctr", ("aws", "eu-west-1", "ctr")),
        (
            f"arn:aws-cn:kinesis:cn-north-1:{ACCOUNT}:stream/c.t_r-1",
            ("aws-cn", "cn-north-1", "c.t_r-1"),
        ),
        (
            f"arn:aws-us-gov:kinesis:us-gov-west-1:{ACCOUNT}:stream/ctr",
            ("aws-us-gov", "us-gov-west-1", "ctr"),
        ),
    ],
)
def test_the_partitions_arns_are_taken(arn: str, parts: tuple[str, str, str]) -> None:
    from openprofiles.connectors.kinesis import StreamArn, stream_arn

    partition, region, name = parts
    assert stream_arn(arn) == StreamArn(arn, partition, region, ACCOUNT, name)
    assert stream_arn("ctr") is None
