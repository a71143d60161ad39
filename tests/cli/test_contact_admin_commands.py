"""`openprofiles instances associate` run again and `openprofiles dlq retry` of contact records,
on a real data dir and database (both backends)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from tests.unit.integrations.integ_helpers import INSTANCE, ctr, make_domain, send

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.integrations.service import get_integration, put_integration
from openprofiles.object_types.service import delete_object_type, put_object_type
from openprofiles.settings import Settings

D = "cli"


def _common(settings: Settings) -> list[str]:
    common = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        common += ["--database-url", settings.database_url]
    return common


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_associating_again_keeps_the_object_type(settings: Settings) -> None:
    services = build_services(settings)
    try:
        make_domain(services, D)
        with services.write() as tx:
            put_integration(
                tx, domain_name=D, uri=INSTANCE, object_type_name="CTR-AutoAssociateOnly"
            )
        again = ["instances", "associate", "--instance", INSTANCE, "--domain", D]
        out = _run(*again, *_common(settings))
        assert "ingested as CTR-AutoAssociateOnly" in out
        with services.read() as tx:
            kept = get_integration(tx, domain_name=D, uri=INSTANCE).object_type_name
        assert kept == "CTR-AutoAssociateOnly"
        # --object-type changes it.
        _run(*again, "--object-type", "CTR-NoInferred", *_common(settings))
        with services.read() as tx:
            changed = get_integration(tx, domain_name=D, uri=INSTANCE).object_type_name
        assert changed == "CTR-NoInferred"
    finally:
        services.database.dispose()


def test_a_new_association_without_object_type_gets_ctr(settings: Settings) -> None:
    services = build_services(settings)
    try:
        make_domain(services, D)
    finally:
        services.database.dispose()
    out = _run("instances", "associate", "--instance", INSTANCE, "--domain", D, *_common(settings))
    assert "ingested as CTR." in out
    listed = json.loads(_run("instances", "list", "--json", *_common(settings)))
    assert [i["ObjectTypeName"] for i in listed] == ["CTR"]


def _stale_and_invalid_letters(settings: Settings) -> None:
    """Two dead letters: an older version of contact B (dead-lettered while the integration's
    object type was gone; the newer one was applied since) and an invalid record X."""
    services = build_services(settings)
    calls = {"Description": "calls", "TemplateId": "CTR"}
    try:
        make_domain(services, D)
        with services.write() as tx:
            put_object_type(tx, domain_name=D, name="Calls", params=calls)
            put_integration(tx, domain_name=D, uri=INSTANCE, object_type_name="Calls")
            delete_object_type(tx, domain_name=D, name="Calls")
        send(services, ctr("B", last_update="2024-03-01T10:05:00Z"))
        with services.write() as tx:
            put_object_type(tx, domain_name=D, name="Calls", params=calls)
        send(services, ctr("B", last_update="2024-03-01T11:05:00Z"))
        send(services, ctr("X", address="n/a 0"))
    finally:
        services.database.dispose()


def test_dlq_retry_lists_superseded_contact_records(settings: Settings) -> None:
    _stale_and_invalid_letters(settings)
    listed = json.loads(_run("dlq", "list", "--domain", D, "--json", *_common(settings)))
    stale, invalid = (x["MessageId"] for x in listed)

    retried = json.loads(_run("dlq", "retry", "--domain", D, "--json", *_common(settings)))

    assert retried == {
        "Succeeded": [stale],
        "Superseded": [stale],
        "Failed": [invalid],
        "NotRetried": {},
    }
    again = _run("dlq", "retry", "--domain", D, *_common(settings))
    assert again.strip() == "0 ingested, 1 still failing."


def test_dlq_retry_says_how_many_were_superseded(settings: Settings) -> None:
    _stale_and_invalid_letters(settings)

    out = _run("dlq", "retry", "--domain", D, *_common(settings))

    assert out.splitlines()[0] == "0 ingested, 1 still failing."
    assert "1 removed as superseded" in out and "nothing was changed" in out
