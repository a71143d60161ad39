"""`dlq retry` in batches: a transaction per batch, letters that still fail walked past, and two
retries of one queue at once applying each letter once — on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tests.support.concurrency import race
from tests.unit.ingest.conftest import DOMAIN, crm_type, make_domain, put_type

from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.sinks import dead_letter
from openprofiles.profiles.service import SearchCriterion, search_profiles

from .test_dlq_resend import storage


def letters(services: Services, records: list[dict[str, str]], type_name: str = "Crm") -> list[str]:
    return [
        dead_letter(
            services,
            domain_name=DOMAIN,
            object_type_name=type_name,
            object_json=json.dumps(r),
            reason="No profile matched.",
            category="no_profile",
        ).message_id
        for r in records
    ]


def stored(services: Services) -> list[str]:
    with services.read() as tx:
        return [x.message_id for x in service.list_messages(tx, domain_name=DOMAIN)]


def profiles_with(services: Services, email: str) -> int:
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=DOMAIN, criteria=[SearchCriterion("_email", (email,))]
        )
    return len(page)


@pytest.fixture
def queue(services: Services) -> Services:
    make_domain(services)
    put_type(services, "Crm", crm_type())
    return services


def test_batches_walk_past_letters_that_still_fail(
    queue: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "RETRY_BATCH", 2)
    good = letters(queue, [{"id": str(n), "email": f"c{n}@example.com"} for n in range(5)])
    # Of a type that does not exist: they fail again, and stay, with another attempt.
    bad = letters(queue, [{"id": "x"}, {"id": "y"}], "Missing")
    outcome = service.retry_in_batches(queue, domain_name=DOMAIN)
    assert sorted(outcome.succeeded) == sorted(good)
    assert sorted(outcome.failed) == sorted(bad)
    assert sorted(stored(queue)) == sorted(bad)
    assert [profiles_with(queue, f"c{n}@example.com") for n in range(5)] == [1] * 5


def test_what_a_batch_did_stays_done_when_a_later_one_fails(
    queue: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole queue was one transaction: on SQLite it held every API write for as long as
    the retry ran (seconds for 10,000 letters), and one failure undid it all."""
    monkeypatch.setattr(service, "RETRY_BATCH", 2)
    ids = letters(queue, [{"id": str(n), "email": f"d{n}@example.com"} for n in range(5)])
    real = service.retry
    calls = []

    def second_batch_breaks(*args: object, **kwargs: object) -> object:
        calls.append(kwargs["message_ids"])
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "retry", second_batch_breaks)
    with pytest.raises(RuntimeError):
        service.retry_in_batches(queue, domain_name=DOMAIN)
    assert calls[0] == ids[:2]
    assert stored(queue) == ids[2:]
    assert [profiles_with(queue, f"d{n}@example.com") for n in range(2)] == [1, 1]


def test_two_retries_at_once_apply_each_letter_once(queue: Services) -> None:
    """On PostgreSQL both retries read every letter and applied it, each reporting all of them
    as ingested: a write landing in between could be overwritten by a stale letter."""
    ids = letters(queue, [{"id": str(n), "email": f"e{n}@example.com"} for n in range(40)])

    def retry_all() -> list[str]:
        return service.retry_in_batches(queue, domain_name=DOMAIN).succeeded

    done = race([retry_all, retry_all])
    assert sorted(done) == sorted(ids)
    assert stored(queue) == []


def test_the_cli_retries_and_says_so(queue: Services) -> None:
    letters(queue, [{"id": "1", "email": "f1@example.com"}])
    letters(queue, [{"id": "x"}], "Missing")
    base = [*storage(queue.settings), "--domain", DOMAIN]
    result = CliRunner().invoke(main, ["dlq", "retry", *base])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 ingested, 1 still failing.")
    unknown = CliRunner().invoke(
        main, ["dlq", "retry", *storage(queue.settings), "--domain", "nope"]
    )
    assert unknown.exit_code == 1 and "nope" in unknown.output
