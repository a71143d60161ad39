"""The AWS CLI works against OpenProfiles with nothing but --endpoint-url changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.parametrize("live_server", ["sqlite"], indirect=True)


def _aws(server, *args: str) -> dict:
    aws = shutil.which("aws", path=str(Path(sys.executable).parent)) or shutil.which("aws")
    assert aws, "the AWS CLI (awscli) is part of the test dependencies"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": server.admin_key[0],
        "AWS_SECRET_ACCESS_KEY": server.admin_key[1],
        "AWS_DEFAULT_REGION": server.settings.region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    env.pop("AWS_PROFILE", None)
    done = subprocess.run(
        [aws, "--endpoint-url", server.url, "--output", "json", "customer-profiles", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else {}


def test_aws_cli_smoke(live_server):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = _aws(
        live_server, "create-domain", "--domain-name", name, "--default-expiration-days", "366"
    )
    assert created["DomainName"] == name
    pid = _aws(
        live_server,
        "create-profile",
        "--domain-name",
        name,
        "--first-name",
        "Ada",
        "--phone-number",
        "+1 206 345 7890",
    )["ProfileId"]
    found = _aws(
        live_server,
        "search-profiles",
        "--domain-name",
        name,
        "--key-name",
        "_phone",
        "--values",
        "(206) 345-7890",
    )
    assert [item["ProfileId"] for item in found["Items"]] == [pid]
    listed = _aws(live_server, "list-domains")
    assert name in [item["DomainName"] for item in listed["Items"]]
    _aws(live_server, "delete-domain", "--domain-name", name)
