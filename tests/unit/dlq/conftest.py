"""Fixtures of the dead-letter tests: fake AWS credentials for moto, a domain, SQS clients."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.unit.ingest.conftest import make_domain

from openprofiles.app import build_services
from openprofiles.context import Services
from openprofiles.settings import Settings

REGION = "us-east-1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials for moto, and no chance of reading the developer's real AWS config."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def moto_services(settings: Settings, moto_url: str, aws_env: None) -> Iterator[Services]:
    """Services (both databases) whose SQS endpoint is moto, with the ingestion tests' domain."""
    built = build_services(
        dataclasses.replace(settings, sqs_endpoint_url=moto_url, aws_region=REGION)
    )
    try:
        make_domain(built)
        yield built
    finally:
        built.database.dispose()


def sqs(moto_url: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def receive_all(client: Any, queue_url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        batch = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return messages
        messages += batch
