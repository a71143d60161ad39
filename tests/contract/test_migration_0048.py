"""Migration 0048 (both databases): resource_tag.resource_arn becomes text, so an integration
whose Uri is outside ASCII (percent-encoded whole in its ARN: integrations.service.
integration_arn) can be tagged; the tags stored survive the upgrade, and the downgrade deletes
those whose ARN is longer than the 1,024 characters the code before 0048 could store."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sqlalchemy import text

from openprofiles.store.database import Database
from openprofiles.store.migrate import downgrade_to, upgrade_to

NOW = "2026-12-02 00:00:00"
BASE = "arn:aws:profile:us-east-1:000000000000:domains/d1"
SHORT = f"{BASE}/integrations/{quote('s3://crm', safe='')}"
# A Uri of 250 characters of 4 bytes each: 12 characters each once encoded.
LONG = f"{BASE}/integrations/{quote('s3://' + chr(0x1F600) * 250, safe='')}"


def _tag(conn: Any, arn: str) -> None:
    conn.execute(
        text(
            "INSERT INTO resource_tag (resource_arn, domain_name, tags) "
            "VALUES (:a, 'd1', '{\"team\": \"care\"}')"
        ),
        {"a": arn},
    )


def _tagged(conn: Any) -> set[str]:
    return set(conn.execute(text("SELECT resource_arn FROM resource_tag")).scalars())


def test_0048_stores_an_arn_of_any_length_and_drops_the_longer_ones_on_downgrade(
    settings,
) -> None:
    assert len(LONG) > 3000
    database = Database.from_settings(settings)
    try:
        upgrade_to(database, "0047")
        with database.engine.begin() as conn:
            _tag(conn, SHORT)
        upgrade_to(database, "0048")
        with database.engine.begin() as conn:
            _tag(conn, LONG)
            upgraded = _tagged(conn)
        downgrade_to(database, "0047")
        with database.engine.connect() as conn:
            downgraded = _tagged(conn)
    finally:
        database.dispose()
    assert upgraded == {SHORT, LONG}
    assert downgraded == {SHORT}
