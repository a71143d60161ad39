"""A dead letter goes to its queue's region: an AWS queue URL names it in its host.

The sends used the server's region (OPENPROFILES_AWS_REGION, else us-east-1) whatever queue
they named, while CreateDomain's check asked the queue's own region: a queue in eu-west-1
passed the check and then every dead letter was sent to us-east-1's endpoint, signed for
us-east-1, and refused."""

from __future__ import annotations

import dataclasses

import pytest

from openprofiles.dlq.queue_urls import queue_target
from openprofiles.dlq.sinks import SqsSink, sqs_endpoint
from openprofiles.settings import Settings

EU_QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/dead-letters"
OLD_STYLE = "https://ap-southeast-2.queue.amazonaws.com/123456789012/dead-letters"
LOCAL_QUEUE = "http://127.0.0.1:9324/123456789012/dead-letters"


@pytest.fixture
def settings(sqlite_settings: Settings) -> Settings:
    return dataclasses.replace(
        sqlite_settings, sqs_endpoint_url=None, aws_region="us-east-1", region="us-east-1"
    )


def test_an_aws_queue_is_asked_in_its_own_region(settings: Settings) -> None:
    sink = SqsSink(settings, EU_QUEUE)
    assert sink.endpoint == "https://sqs.eu-west-1.amazonaws.com"
    assert sink._client.meta.region_name == "eu-west-1"
    assert queue_target(settings, OLD_STYLE) == (None, "ap-southeast-2")
    # The oldest form names no region: it is us-east-1's. Asked before for a region "queue".
    oldest = "https://queue.amazonaws.com/123456789012/dead-letters"
    assert queue_target(settings, oldest) == (None, "us-east-1")
    fips = "https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/dead-letters"
    assert queue_target(settings, fips) == (
        "https://sqs-fips.us-gov-west-1.amazonaws.com",
        "us-gov-west-1",
    )
    # dlq resend keys the endpoints it found unreachable by the same endpoint.
    assert sqs_endpoint(settings, EU_QUEUE) == "https://sqs.eu-west-1.amazonaws.com"


def test_a_compatible_servers_queue_is_asked_at_its_host_in_the_servers_region(
    settings: Settings,
) -> None:
    sink = SqsSink(settings, LOCAL_QUEUE)
    assert sink.endpoint == "http://127.0.0.1:9324"
    assert sink._client.meta.region_name == "us-east-1"


def test_the_endpoint_setting_takes_every_request_in_the_queues_region(
    settings: Settings,
) -> None:
    through = dataclasses.replace(settings, sqs_endpoint_url="https://vpce.example.internal")
    assert queue_target(through, EU_QUEUE) == ("https://vpce.example.internal", "eu-west-1")
    assert queue_target(through, LOCAL_QUEUE) == ("https://vpce.example.internal", "us-east-1")
