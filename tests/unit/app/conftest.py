"""The app tests count what one turn of the event loop does with requests that run on it (a
turn's PutProfileObject batch, its one KMS attempt). A server process checks its cached access
keys against the database once a second (auth.credentials.REVOCATION_CHECK_SECONDS), moving the
request that finds the check due to a worker thread, and those arriving meanwhile with it: a
test whose first request took over a second (a KMS that refuses, on a loaded machine) saw its
burst leave the loop. Here the check is due once an hour; tests/cli/test_credentials_* test it."""

from __future__ import annotations

import pytest

from openprofiles.auth import credentials


@pytest.fixture(autouse=True)
def revocation_checked_hourly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "REVOCATION_CHECK_SECONDS", 3600.0)
