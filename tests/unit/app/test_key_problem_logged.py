"""What an API caller is not told of a key that cannot be used reaches the operator's log.

A server whose KMS has no region answers CreateDomain with an AWS KMS key "The server is not
set up to use AWS KMS keys." (the caller must not learn the server's settings); the operator's
message — which setting to set — was shown only on the admin pages, so an API-only installation
logged nothing but the audit line's 400. Through the real ASGI app on SQLite."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from botocore.credentials import Credentials
from tests.support.event_loop import run_in_fresh_thread
from tests.unit.app.test_put_object_batches import Api

from openprofiles.app import create_app
from openprofiles.auth.credentials import create_credential
from openprofiles.settings import Settings
from openprofiles.ui import web
from openprofiles.wire import dispatch

KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


@pytest.fixture(autouse=True)
def fresh_key_problem_lines() -> None:
    """The line is written once a minute per domain and message by the process's limiter: an
    earlier test of the same domain and message must not have used this minute's."""
    dispatch._key_problem_lines.clear()
    web._key_problem_lines.clear()


def test_a_kms_without_a_region_is_logged_for_the_operator(
    sqlite_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    settings = dataclasses.replace(
        sqlite_settings, kms_endpoint_url="http://127.0.0.1:9", aws_region=None
    )
    app = create_app(settings)
    with app.state.services.write() as tx:
        issued = create_credential(tx, role="admin")
    api = Api(app, Credentials(issued.access_key_id, issued.secret_access_key))
    caplog.set_level(logging.WARNING)

    async def create() -> tuple[int, object]:
        body = {"DefaultExpirationDays": 30, "DefaultEncryptionKey": KEY_ARN}
        return await api.call("POST", "/domains/kms-domain", body)

    try:
        status, answer = run_in_fresh_thread(create())
    finally:
        app.state.services.database.dispose()
    assert status == 400
    assert isinstance(answer, dict)
    assert "not set up to use AWS KMS keys" in answer["Message"]
    assert "OPENPROFILES_AWS_REGION" not in answer["Message"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("CreateDomain" in w and "set OPENPROFILES_AWS_REGION" in w for w in warnings), (
        warnings
    )
