"""The AWS SDK for JavaScript v3 works against OpenProfiles with nothing but the endpoint changed.

tests/sdk/js is a small npm package: @aws-sdk/client-customer-profiles pinned by its
package-lock.json, and scenario.mjs, which drives a live server through the SDK and exits
non-zero naming the step whose result differs. Its modules are installed once per session with
`npm ci` (into tests/sdk/js/node_modules, git-ignored) when missing or older than the lock file
(tests.support.npm).

In CI a missing Node.js or npm fails the run: a skipped SDK is an untested one.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.support.npm import missing, npm_ci, tool

from openprofiles.identity import ml_jobs

JS_DIR = Path(__file__).resolve().parents[1] / "sdk" / "js"
MIN_NODE_MAJOR = 20
SCENARIO_TIMEOUT_SECONDS = 120

# Two pairs the ML job matches (one letter apart, same e-mail, phone, birth date, postal code).
PEOPLE = [
    ("Margaret", "Hamilton", "margaret@example.com", "+1 206 555 0101", "1936-08-17", "02139"),
    ("Margret", "Hamilton", "Margaret@Example.com", "(206) 555-0101", "1936-08-17", "02139"),
    ("Grace", "Hopper", "grace@navy.example", "+1 206 555 0102", "1906-12-09", "22201"),
    ("Grace", "Hoper", "grace@navy.example", "206.555.0102", "1906-12-09", "22201"),
    ("Ada", "Lovelace", "ada@example.com", "+44 20 7946 0200", "1815-12-10", "W1 1AA"),
]


NEEDED_BY = "the JS SDK test"


def _tool(name: str) -> str:
    return tool(name, NEEDED_BY, f"the JS SDK test needs Node.js {MIN_NODE_MAJOR}+ and npm")


@pytest.fixture(scope="session")
def node() -> str:
    """Node.js, with the package's modules installed as its lock file pins them."""
    node = _tool("node")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < MIN_NODE_MAJOR:
        missing(f"Node.js {MIN_NODE_MAJOR}+ is needed, {node} is {version or 'unknown'}", NEEDED_BY)
    npm_ci(JS_DIR, _tool("npm"))
    return node


def _matches_domain(client: Any, services: Any) -> str:
    """A domain whose ML matching job has run and found two matches."""
    name = f"jsml-{uuid.uuid4().hex[:10]}"
    client.create_domain(DomainName=name, DefaultExpirationDays=30, Matching={"Enabled": True})
    for first, last, email, phone, birth, postal in PEOPLE:
        client.create_profile(
            DomainName=name,
            FirstName=first,
            LastName=last,
            EmailAddress=email,
            PhoneNumber=phone,
            BirthDate=birth,
            Address={"PostalCode": postal},
        )
    job = ml_jobs.run_matching_job(services, domain_name=name)
    assert job.status == "COMPLETED"
    return name


def test_js_sdk_scenario(live_server: Any, node: str) -> None:
    matches = _matches_domain(live_server.client(), live_server.services)
    # Only what the scenario is given: no AWS_* profile, region or endpoint of the caller's.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "OPENPROFILES_"))
    }
    env.update(
        {
            "OPENPROFILES_ACCESS_KEY_ID": live_server.admin_key[0],
            "OPENPROFILES_SECRET_ACCESS_KEY": live_server.admin_key[1],
            "OPENPROFILES_AGENT_ACCESS_KEY_ID": live_server.agent_key[0],
            "OPENPROFILES_AGENT_SECRET_ACCESS_KEY": live_server.agent_key[1],
            "OPENPROFILES_ACCOUNT_ID": live_server.settings.account_id,
            "OPENPROFILES_REGION": live_server.settings.region,
            "OPENPROFILES_MATCHES_DOMAIN": matches,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            # Node.js 20 is supported by the pinned SDK; its notice about later versions is noise.
            "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true",
        }
    )
    try:
        done = subprocess.run(
            [node, "scenario.mjs", live_server.url],
            cwd=JS_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the JS SDK scenario ran over {SCENARIO_TIMEOUT_SECONDS} s: {exc.stdout!r}")
    assert done.returncode == 0, f"{done.stderr}{done.stdout}"
    assert "steps passed" in done.stdout, done.stdout
    # The scenario cleans up after itself; the matches domain is this test's.
    live_server.client().delete_domain(DomainName=matches)
    names = [item["DomainName"] for item in live_server.client().list_domains()["Items"]]
    assert not [name for name in names if name.startswith("js-")], names
