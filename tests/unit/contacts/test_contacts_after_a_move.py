"""Records kept waiting for the contact they continue, sent on by an agent's link at once
(AddProfileKey `_ctrContactId`: contacts.service `_wake_linked`); and an instance moved to
another domain: an update of a contact applied in the domain it left goes there
(contacts.moves `applied_where_moved_from`), and so does a leg of it (a transfer, a task), and
a record a batch kept waiting in the old domain as the move began
follows it (the move waits for the batch), or, left there all the same, at the next sweep
(`follow_strays`); a move in two steps (DeleteIntegration,
then an association elsewhere) routes so too — on SQLite and PostgreSQL, through the real
service functions. A record whose own contact the new domain holds (its start event) stays
there, and a stream holds for the new domain's unusable key only what does not go back."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import boto3
import pytest
from sqlalchemy import select
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.contacts.test_contacts_without_endpoint import (
    CALLER,
    D,
    contacts_of,
    link,
    new_profile,
    start_event,
    task,
    with_template,
)
from tests.unit.contacts.test_waiting_records_moves import (
    NEW,
    letters_of,
    move_instance,
    on_profile_in_new,
)
from tests.unit.integrations.integ_helpers import (
    INSTANCE,
    OTHER_INSTANCE,
    associate,
    ctr,
    make_domain,
    send,
)

from openprofiles.app import build_services
from openprofiles.contacts.kept import list_unrouted
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import (
    apply_contact_event,
    connect_instance,
    ingest_contact_items,
)
from openprofiles.contacts.sweep import send_kept_on, send_waiting_on
from openprofiles.context import Services, Tx
from openprofiles.crypto.keyring import Keyring
from openprofiles.domains.service import delete_domain
from openprofiles.errors import InternalServer
from openprofiles.integrations.service import delete_integration
from openprofiles.objects.service import list_profile_objects
from openprofiles.profiles.service import SearchCriterion, search_profiles
from openprofiles.settings import Settings
from openprofiles.store.schema import instance_moved_from

LATER = "2022-04-08T16:00:00Z"


@pytest.mark.parametrize("linked", ["call-1", "task-1"])
def test_an_agents_link_sends_the_waiting_record_on_at_once(
    services: Services, linked: str
) -> None:
    """The link (of the contact the task continues, or of the task itself) placed the task,
    but only the sweep sent it on, up to a minute later: the agent did not see it."""
    with_template(services, "CTR")
    assert send(services, task("task-1", PreviousContactId="call-1")).waiting == 1
    maria = new_profile(services, FirstName="Maria")

    link(services, maria, linked)  # no sweep after it

    assert contacts_of(services, maria, "CTR") == ["task-1"]
    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert letters_of(services, D) == []


def stored(services: Services, domain_name: str, contact_id: str) -> list[dict[str, str]]:
    """The CTR records of the profiles `contact_id` finds in the domain (none: no profile)."""
    with services.read() as tx:
        page, _ = search_profiles(
            tx, domain_name=domain_name, criteria=[SearchCriterion("_ctrContactId", (contact_id,))]
        )
        out = []
        for found, _ in page:
            records, _ = list_profile_objects(
                tx,
                domain_name=domain_name,
                object_type_name="CTR",
                profile_id=found.profile_id,
                limit=10,
            )
            out.extend(json.loads(r.object_json) for r in records)
    return out


def test_an_update_of_a_contact_applied_before_a_move_goes_where_the_contact_is(
    services: Services,
) -> None:
    """It went to the new domain as a new contact (a second profile, a second copy), the old
    domain's copy left stale. A new contact goes to the new domain."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)

    update = ctr("call-1", address=CALLER, last_update=LATER, Attributes={"outcome": "sold"})
    outcome = send(services, update, ctr("call-2", address=CALLER))

    assert outcome.accepted == 2 and not outcome.rejected
    [record] = stored(services, D, "call-1")
    assert (record["LastUpdateTimestamp"], record["Attributes"]) == (LATER, {"outcome": "sold"})
    assert stored(services, NEW, "call-1") == []
    assert on_profile_in_new(services, "call-2") == ["call-2"]
    assert stored(services, D, "call-2") == []


def test_back_in_its_old_domain_an_instance_sends_updates_where_their_contacts_are(
    services: Services,
) -> None:
    """Moved back, the domain is the instance's own again, and the one it left in turn keeps
    the updates of the contacts applied there meanwhile."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)
    send(services, ctr("call-2", address=CALLER))
    with services.write() as tx:
        connect_instance(tx, domain_name=D, instance_arn=INSTANCE, move=True)

    send(
        services,
        ctr("call-1", address=CALLER, last_update=LATER),
        ctr("call-2", address=CALLER, last_update=LATER),
    )

    assert [r["LastUpdateTimestamp"] for r in stored(services, D, "call-1")] == [LATER]
    assert [r["LastUpdateTimestamp"] for r in stored(services, NEW, "call-2")] == [LATER]
    assert stored(services, D, "call-2") == stored(services, NEW, "call-1") == []


def test_an_update_goes_to_the_new_domain_once_the_old_one_is_deleted(
    services: Services,
) -> None:
    """A deleted domain holds nothing: its contacts are new to the instance's domain."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)
    with services.write() as tx:
        delete_domain(tx, domain_name=D)

    outcome = send(services, ctr("call-1", address=CALLER, last_update=LATER))

    assert outcome.accepted == 1 and not outcome.rejected
    assert on_profile_in_new(services, "call-1") == ["call-1"]


def test_a_record_left_waiting_in_the_domain_its_instance_left_follows_it_at_the_sweep(
    services: Services,
) -> None:
    """What a batch that routed the task to the old domain just before the move committed
    leaves (the move's own transaction could not see it; moved here without the move's
    re-keying, as the race leaves it): it waited in the old domain, where its contact never
    comes, until the hour's end."""
    with_template(services, "CTR")
    send(services, task("task-1", PreviousContactId="call-1"))
    move_instance_bare(services)
    send(services, ctr("call-1", address=CALLER))

    send_kept_on(services)  # the server's sweep

    assert on_profile_in_new(services, "call-1") == ["call-1", "task-1"]
    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert letters_of(services, D) == [] and letters_of(services, NEW) == []


def move_instance_bare(services: Services) -> None:
    """The integration moved and nothing else: the state a record kept waiting by a batch
    that committed after the move is in."""
    make_domain(services, NEW)
    associate(services, NEW, move=True)


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_the_race_itself_a_batch_keeping_a_record_as_the_instance_moves(
    services: Services,
) -> None:
    """The batch routed the task to the old domain and kept it waiting; a move started
    meanwhile waits for the batch (the instance's association lock, which the batch holds
    shared: contacts.routing.Router.look_up), then takes the task to the new domain with the
    instance's other waiting records (`follow_instance`), with no sweep. Before the batch held
    the lock, the move committed first, not seeing the batch's uncommitted row, and the task
    was left to the sweep's `follow_strays`. (PostgreSQL: SQLite's one writer serialises the
    two.)"""
    with_template(services, "CTR")
    make_domain(services, NEW)

    def batch(tx: Tx) -> None:
        body = json.dumps(task("task-1", PreviousContactId="call-1"))
        assert ingest_contact_items(tx, split_body(body)).waiting == 1

    def move() -> str | None:
        with services.write() as tx:
            done, _ = connect_instance(tx, domain_name=NEW, instance_arn=INSTANCE, move=True)
        return done.previous_domain

    assert second_writer_meets_first(services, batch, move) == D
    send(services, ctr("call-1", address=CALLER))

    assert on_profile_in_new(services, "call-1") == ["call-1", "task-1"]
    with services.read() as tx:
        assert list_unrouted(tx) == []


def test_a_leg_of_a_contact_applied_before_a_move_goes_where_the_contact_is(
    services: Services,
) -> None:
    """The task went to the new domain, where its call never comes: it waited there the hour
    and was dead-lettered, the call's profile in the old domain never showing it."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)

    outcome = send(services, task("task-1", PreviousContactId="call-1"))

    assert outcome.accepted == 1 and not outcome.rejected and outcome.waiting == 0
    assert sorted(r["ContactId"] for r in stored(services, D, "call-1")) == ["call-1", "task-1"]
    assert stored(services, NEW, "task-1") == []
    with services.read() as tx:
        assert list_unrouted(tx) == []


def test_a_record_waiting_for_a_leg_that_goes_where_its_call_is_goes_there_too(
    services: Services,
) -> None:
    """The task waited for the transfer leg; the move made it wait in the new domain; the leg,
    a leg of a call applied before the move, goes to the old domain: the task must be sent on
    by it and follow it there, not wait the hour in the new domain."""
    with_template(services, "CTR")
    assert send(services, task("task-1", PreviousContactId="leg-1")).waiting == 1
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)

    outcome = send(services, task("leg-1", PreviousContactId="call-1"))

    assert outcome.accepted == 1 and outcome.woken is not None and outcome.woken.accepted == 1
    contacts = sorted(r["ContactId"] for r in stored(services, D, "call-1"))
    assert contacts == ["call-1", "leg-1", "task-1"]
    with services.read() as tx:
        assert list_unrouted(tx) == []
    assert letters_of(services, D) == [] and letters_of(services, NEW) == []


def test_an_update_goes_to_the_new_domain_when_the_old_domains_key_is_refused(
    settings: Settings,
) -> None:
    """A domain given up (its key disabled) does not hold up the instance's records."""
    services = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        make_domain(services, D, key.arn(settings.region, settings.account_id))
        associate(services, D, object_type_name="CTR")
        send(services, ctr("call-1", address=CALLER))
        move_instance(services)
        keyring.disable(key.key_id)

        outcome = send(services, ctr("call-1", address=CALLER, last_update=LATER))

        assert outcome.accepted == 1 and not outcome.rejected
        assert on_profile_in_new(services, "call-1") == ["call-1"]
    finally:
        services.database.dispose()


@contextmanager
def kms_down(settings: Settings) -> Iterator[Services]:
    """The services with their KMS endpoint at a port bound and held but never listening: a
    connection to it is refused at once, as when the KMS is down or out of reach."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        services = build_services(replace(settings, kms_endpoint_url=endpoint))
        try:
            yield services
        finally:
            services.database.dispose()


def _on_a_kms_key(
    settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, str]:
    """Settings whose KMS is moto's (data keys never cached, so an outage shows at once), and
    a key made there for the old domain."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    working = replace(
        settings, kms_endpoint_url=moto_url, aws_region="us-east-1", data_key_cache_seconds=0
    )
    kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
    return working, kms.create_key()["KeyMetadata"]["Arn"]


@pytest.mark.moto
def test_an_update_waits_out_an_outage_of_the_old_domains_kms(
    settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the old domain's KMS did not answer, the update went to the new domain as a new
    contact, and the next one, the KMS back, to the old domain: one contact split over two
    domains. A request now fails with InternalServerException (clients retry those), nothing
    applied; a stream holds the instance's records (the new contact too: where its contacts
    are cannot be told) and sends them on once the KMS answers."""
    working, key_arn = _on_a_kms_key(settings, moto_url, monkeypatch)
    services = build_services(working)
    try:
        make_domain(services, D, key_arn)
        associate(services, D, object_type_name="CTR")
        send(services, ctr("call-1", address=CALLER))
        move_instance(services)  # NEW under the local keyring's default key
    finally:
        services.database.dispose()
    update = ctr("call-1", address=CALLER, last_update=LATER, Attributes={"outcome": "sold"})
    body = "\n".join(json.dumps(r) for r in (update, ctr("call-2", address=CALLER)))

    with kms_down(working) as down:
        with pytest.raises(InternalServer), down.write() as tx:
            ingest_contact_items(tx, split_body(body))
        with down.write() as tx:
            held = ingest_contact_items(tx, split_body(body), hold_unavailable=True)
        assert (held.accepted, held.held, len(held.rejected)) == (0, 2, 2)
        assert stored(down, NEW, "call-1") == stored(down, NEW, "call-2") == []

    services = build_services(working)
    try:
        sent = send_kept_on(services)

        assert sent.accepted == 2 and not sent.rejected
        [record] = stored(services, D, "call-1")
        assert (record["LastUpdateTimestamp"], record["Attributes"]) == (LATER, {"outcome": "sold"})
        assert stored(services, NEW, "call-1") == []
        assert on_profile_in_new(services, "call-2") == ["call-2"]
        with services.read() as tx:
            assert list_unrouted(tx) == []
    finally:
        services.database.dispose()


@pytest.mark.moto
def test_held_records_that_cannot_go_yet_hold_back_no_other_instances_records(
    settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A moved instance's held updates go back to the domain it left, whose KMS does not
    answer: each chunk of them was held again and stopped the run, so the kept records of an
    instance listed after it, which its domain could take, were never sent on while the
    outage lasted. Now a run sends on every record kept before it began at most once, and
    those held for a domain that cannot take them yet not at all (contacts.kept `held_for`)."""
    working, key_arn = _on_a_kms_key(settings, moto_url, monkeypatch)
    services = build_services(working)
    try:
        make_domain(services, D, key_arn)
        associate(services, D, object_type_name="CTR")
        calls = [f"call-{n}" for n in range(3)]
        send(services, *(ctr(c, address=CALLER) for c in calls))
        move_instance(services)  # NEW under the local keyring's default key
        # Kept while associated with no domain, then associated without a replay: the state
        # of an association whose process stopped before it sent them all on.
        other = ctr("other-1", address="+17208401099", instance=OTHER_INSTANCE)
        assert send(services, other).unrouted == {OTHER_INSTANCE: 1}
        associate(services, NEW, OTHER_INSTANCE)
    finally:
        services.database.dispose()
    assert sorted([INSTANCE, OTHER_INSTANCE])[0] == INSTANCE  # the moved one is sent first
    updates = "\n".join(json.dumps(ctr(c, address=CALLER, last_update=LATER)) for c in calls)

    with kms_down(working) as down:
        with down.write() as tx:
            assert ingest_contact_items(tx, split_body(updates), hold_unavailable=True).held == 3

        sent = send_kept_on(down, limit=2)

        # Held for the domain left, whose KMS still does not answer: not even tried.
        assert sent.accepted == 1 and sent.held == 0
        assert on_profile_in_new(down, "other-1") == ["other-1"]
        with down.read() as tx:
            assert sorted(k.instance_arn for k in list_unrouted(tx)) == [INSTANCE] * 3

    services = build_services(working)
    try:
        assert send_kept_on(services, limit=2).accepted == 3
        updated = {r["ContactId"]: r["LastUpdateTimestamp"] for r in stored(services, D, calls[0])}
        assert updated == dict.fromkeys(calls, LATER)
    finally:
        services.database.dispose()


def dissociate(services: Services, domain_name: str) -> None:
    """DeleteIntegration of the instance's integration (the first step of a move in two)."""
    with services.write() as tx:
        delete_integration(tx, domain_name=domain_name, uri=INSTANCE)


def connect(services: Services, domain_name: str) -> None:
    """PutIntegration / `openprofiles instances associate` (no move: none is associated)."""
    with services.write() as tx:
        done, _ = connect_instance(tx, domain_name=domain_name, instance_arn=INSTANCE, move=False)
    assert done.previous_domain is None


def test_after_a_move_in_two_steps_an_update_goes_where_the_contact_is(
    services: Services,
) -> None:
    """Dissociated (DeleteIntegration), then associated with another domain: no move was
    noted, and the update went to the new domain as a new contact, the old copy left stale.
    The update sent while the instance had no domain is kept and goes there too."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER), ctr("call-3", address=CALLER))
    dissociate(services, D)
    kept = send(services, ctr("call-3", address=CALLER, last_update=LATER))
    assert kept.unrouted == {INSTANCE: 1}
    make_domain(services, NEW)
    connect(services, NEW)

    update = ctr("call-1", address=CALLER, last_update=LATER, Attributes={"outcome": "sold"})
    outcome = send(services, update, ctr("call-2", address=CALLER))

    assert outcome.accepted == 2 and not outcome.rejected
    in_d = {r["ContactId"]: r for r in stored(services, D, "call-1")}
    assert sorted(in_d) == ["call-1", "call-3"]
    assert in_d["call-1"]["Attributes"] == {"outcome": "sold"}
    assert in_d["call-1"]["LastUpdateTimestamp"] == in_d["call-3"]["LastUpdateTimestamp"] == LATER
    assert stored(services, NEW, "call-1") == stored(services, NEW, "call-3") == []
    assert on_profile_in_new(services, "call-2") == ["call-2"]


def test_associated_again_with_the_domain_it_left_the_domain_is_its_own(
    services: Services,
) -> None:
    """Back in D after two steps each way, D is the instance's own again (nothing noted of
    it), and NEW, left in turn, keeps the updates of the contacts applied there meanwhile."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    dissociate(services, D)
    make_domain(services, NEW)
    connect(services, NEW)
    send(services, ctr("call-2", address=CALLER))
    dissociate(services, NEW)
    connect(services, D)

    send(
        services,
        ctr("call-1", address=CALLER, last_update=LATER),
        ctr("call-2", address=CALLER, last_update=LATER),
    )

    assert [r["LastUpdateTimestamp"] for r in stored(services, D, "call-1")] == [LATER]
    assert [r["LastUpdateTimestamp"] for r in stored(services, NEW, "call-2")] == [LATER]
    assert stored(services, D, "call-2") == stored(services, NEW, "call-1") == []
    with services.read() as tx:
        left = tx.conn.execute(select(instance_moved_from.c.domain_name)).scalars().all()
    assert left == [NEW]


def test_an_update_sent_back_is_applied_while_the_new_domains_key_is_refused(
    settings: Settings,
) -> None:
    """The update goes to the old domain, whose key works: looking for records waiting for
    it in the new domain (whose key is disabled) failed the whole request."""
    services = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        with_template(services, "CTR")
        send(services, ctr("call-1", address=CALLER))
        make_domain(services, NEW, key.arn(settings.region, settings.account_id))
        with services.write() as tx:
            connect_instance(tx, domain_name=NEW, instance_arn=INSTANCE, move=True)
        keyring.disable(key.key_id)

        outcome = send(services, ctr("call-1", address=CALLER, last_update=LATER))

        assert outcome.accepted == 1 and not outcome.rejected
        assert [r["LastUpdateTimestamp"] for r in stored(services, D, "call-1")] == [LATER]
    finally:
        services.database.dispose()


@pytest.mark.moto
def test_an_instance_moves_away_from_a_domain_whose_kms_does_not_answer(
    settings: Settings, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator moves the instance away from the domain whose KMS is out, a stream's
    record of it held meanwhile: the association's replay of that record failed on the left
    domain's outage (InternalServerException), and with it the move. The record is held
    again instead, and goes where its contact is once the KMS answers."""
    working, key_arn = _on_a_kms_key(settings, moto_url, monkeypatch)
    services = build_services(working)
    try:
        make_domain(services, D, key_arn)
        associate(services, D, object_type_name="CTR")
        send(services, ctr("call-1", address=CALLER))
    finally:
        services.database.dispose()
    update = ctr("call-1", address=CALLER, last_update=LATER, Attributes={"outcome": "sold"})

    with kms_down(working) as down:
        with down.write() as tx:
            body = json.dumps(update)
            assert ingest_contact_items(tx, split_body(body), hold_unavailable=True).held == 1
        make_domain(down, NEW)  # under the local keyring's default key
        with down.write() as tx:
            _, replayed = connect_instance(tx, domain_name=NEW, instance_arn=INSTANCE, move=True)
        assert (replayed.accepted, replayed.held) == (0, 1)
        assert stored(down, NEW, "call-1") == []

    services = build_services(working)
    try:
        sent = send_kept_on(services)

        assert sent.accepted == 1 and not sent.rejected
        [record] = stored(services, D, "call-1")
        assert (record["LastUpdateTimestamp"], record["Attributes"]) == (LATER, {"outcome": "sold"})
        assert stored(services, NEW, "call-1") == []
    finally:
        services.database.dispose()


def test_a_leg_whose_start_event_came_after_the_move_stays_in_the_new_domain(
    services: Services,
) -> None:
    """The leg's start event, after the move, applied it in the new domain (an event that
    names no contact applied in the domain the instance left goes to the instance's domain
    now, as its record would); its record went back to the old domain, where the call it
    continues is: one contact in two domains, two profiles showing it."""
    with_template(services, "CTR")
    send(services, ctr("call-1", address=CALLER))
    move_instance(services)
    endpoint = {"Address": CALLER, "Type": "TELEPHONE_NUMBER"}
    with services.write() as tx:
        live = apply_contact_event(
            tx, start_event("leg-1", Channel="VOICE", CustomerEndpoint=endpoint)
        )
    assert live.domain_name == NEW

    outcome = send(services, ctr("leg-1", address=CALLER, PreviousContactId="call-1"))

    assert outcome.accepted == 1 and not outcome.rejected
    assert [r["ContactId"] for r in stored(services, NEW, "leg-1")] == ["leg-1"]
    assert [r["ContactId"] for r in stored(services, D, "call-1")] == ["call-1"]
    assert stored(services, D, "leg-1") == []


def test_a_stream_sends_an_update_back_while_the_new_domains_key_is_refused(
    settings: Settings,
) -> None:
    """A stream held the update for the new domain, whose key is refused, though it goes to
    the old one, whose key works (as a request sends it): held until the new domain's key
    works, maybe for ever. A new contact, which does go to the new domain, is held."""
    services = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        with_template(services, "CTR")
        send(services, ctr("call-1", address=CALLER))
        make_domain(services, NEW, key.arn(settings.region, settings.account_id))
        with services.write() as tx:
            connect_instance(tx, domain_name=NEW, instance_arn=INSTANCE, move=True)
        keyring.disable(key.key_id)
        body = "\n".join(
            json.dumps(r)
            for r in [
                ctr("call-1", address=CALLER, last_update=LATER),
                ctr("call-2", address=CALLER),
            ]
        )

        with services.write() as tx:
            outcome = ingest_contact_items(tx, split_body(body), hold_unavailable=True)

        assert (outcome.accepted, outcome.held) == (1, 1)
        assert [r.contact_id for r in outcome.rejected] == ["call-2"]
        assert [r["LastUpdateTimestamp"] for r in stored(services, D, "call-1")] == [LATER]
        assert stored(services, D, "call-2") == []
        with services.read() as tx:
            assert [k.instance_arn for k in list_unrouted(tx)] == [INSTANCE]
    finally:
        services.database.dispose()


def test_a_leg_whose_start_event_is_in_the_new_domain_is_held_while_its_key_is_refused(
    settings: Settings,
) -> None:
    """The leg's start event placed it in the new domain; that domain's key then failed, so
    whether the leg is there could not be checked, and its record went back to the old domain
    by the call it continues: the leg in two domains. A record with a customer endpoint goes
    back by its own contact only then; this one is held with its domain."""
    services = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        with_template(services, "CTR")
        send(services, ctr("call-1", address=CALLER))
        make_domain(services, NEW, key.arn(settings.region, settings.account_id))
        with services.write() as tx:
            connect_instance(tx, domain_name=NEW, instance_arn=INSTANCE, move=True)
        endpoint = {"Address": CALLER, "Type": "TELEPHONE_NUMBER"}
        # Naming no contact of the old domain, the event stays in the new one.
        leg_event = start_event("leg-1", Channel="VOICE", CustomerEndpoint=endpoint)
        with services.write() as tx:
            assert apply_contact_event(tx, leg_event).domain_name == NEW
        keyring.disable(key.key_id)
        body = json.dumps(ctr("leg-1", address=CALLER, PreviousContactId="call-1"))

        with services.write() as tx:
            outcome = ingest_contact_items(tx, split_body(body), hold_unavailable=True)

        assert (outcome.accepted, outcome.held) == (0, 1)
        assert stored(services, D, "leg-1") == []
        with services.read() as tx:
            assert [k.instance_arn for k in list_unrouted(tx)] == [INSTANCE]
    finally:
        services.database.dispose()


def test_a_record_left_waiting_for_a_leg_sent_back_follows_it_while_the_new_key_is_refused(
    settings: Settings,
) -> None:
    """The leg went back to the old domain while the new domain's key was refused, the task
    waiting for it in the new domain left for the sweep; the sweep, after the hour, held the
    task for the new domain's key instead of sending it where its leg is."""
    services = build_services(replace(settings, data_key_cache_seconds=0))
    try:
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        with_template(services, "CTR")
        assert send(services, task("task-1", PreviousContactId="leg-1")).waiting == 1
        send(services, ctr("call-1", address=CALLER))
        make_domain(services, NEW, key.arn(settings.region, settings.account_id))
        with services.write() as tx:
            connect_instance(tx, domain_name=NEW, instance_arn=INSTANCE, move=True)
        keyring.disable(key.key_id)
        assert send(services, task("leg-1", PreviousContactId="call-1")).accepted == 1
        with services.read() as tx:
            now = tx.now

        swept = send_waiting_on(services, now=now + timedelta(hours=2))

        assert swept.accepted == 1 and not swept.rejected
        contacts = sorted(r["ContactId"] for r in stored(services, D, "call-1"))
        assert contacts == ["call-1", "leg-1", "task-1"]
        with services.read() as tx:
            assert list_unrouted(tx) == []
    finally:
        services.database.dispose()
