"""A contact's record page, through Starlette's TestClient: "Open" in the contact history used to
show the record's raw JSON alone (dozens of members, nested), where an agent looks for the
channel, when the contact started and ended, how long it lasted, the agent, the queue and why it
ended. These are labelled first now, the JSON folded under them in a <details>; another object
type's record is still its JSON. The page's audit line names the profile, and no value of the
record is logged. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
from html import unescape

import pytest
from starlette.testclient import TestClient
from tests.unit.integrations.integ_helpers import associate, ctr, send
from tests.unit.ui.test_ui_private_urls import (
    agent,  # noqa: F401  (the fixture: acme with 21 namesakes, and other)
    app_client,  # noqa: F401  (the fixture agent needs)
    customer,  # noqa: F401  (a profile of acme with Orders records)
    link_named,
)

OPEN_FIRST = 'Open<span class="visually-hidden"> record 1</span>'


def opened_contact(agent: TestClient, contact_id: str) -> str:  # noqa: F811
    """The record page of the contact, opened as an agent does: the screen pop, then "Open"
    in the history of the profile it leads to."""
    popped = agent.get(f"/agent/contacts/{contact_id}", params={"domain": "acme"})
    assert popped.status_code == 303, popped.text
    profile = agent.get(popped.headers["location"]).text
    opened = agent.get(link_named(profile, OPEN_FIRST))
    assert opened.status_code == 200
    return opened.text


def labelled(html: str) -> dict[str, str]:
    """The labelled details of a record page: label -> text shown (a <time>'s UTC text)."""
    found = re.search(r'<dl class="pairs contact-details">(.*?)</dl>', html, re.S)
    assert found, "no labelled details"
    pairs = re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", found[1], re.S)
    return {unescape(k): unescape(re.sub(r"<[^>]+>", "", v)).strip() for k, v in pairs}


def folded_json(html: str) -> dict[str, object]:
    """The whole record, as the <details> under the labelled details holds it."""
    found = re.search(
        r'<details class="record">\s*<summary id="record-json">[^<]+</summary>.*?'
        r'<pre class="record"[^>]*aria-labelledby="record-json"[^>]*>(.*?)</pre>\s*</details>',
        html,
        re.S,
    )
    assert found, "no record folded in a <details>"
    record = json.loads(unescape(found[1]))
    assert isinstance(record, dict)
    return record


def test_a_contacts_record_page_labels_its_details_above_the_json(
    agent: TestClient,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = agent.app.state.services  # type: ignore[attr-defined]
    associate(services, "acme")
    record = ctr(
        "c-detail-1",
        channel="CHAT",
        address="lin.chen.detail@example.com",
        start="2026-01-03T09:00:05Z",
        end="2026-01-03T09:04:10Z",
        agent="agent7",
        Queue={"Name": "Support"},
        DisconnectReason="AGENT_DISCONNECT",
    )
    assert send(services, record).accepted == 1
    with caplog.at_level(logging.DEBUG):
        page = opened_contact(agent, "c-detail-1")
    assert labelled(page) == {
        "Contact ID": "c-detail-1",
        "Channel": "CHAT",
        "Start": "2026-01-03 09:00:05 UTC",
        "End": "2026-01-03 09:04:10 UTC",
        "Duration": "4:05",
        "Agent": "agent7",
        "Queue": "Support",
        "Disconnect reason": "AGENT_DISCONNECT",
    }
    # The times in <time datetime> for the browser to show in its own zone.
    assert '<time datetime="2026-01-03T09:00:05Z">' in page
    assert '<time datetime="2026-01-03T09:04:10Z">' in page
    assert folded_json(page)["ContactId"] == "c-detail-1"
    assert re.search(r"<h1[^>]*>Contact record</h1>", page)
    # Shown, never logged: the record's values stay out of the log.
    for value in ("lin.chen.detail@example.com", "agent7", "Support"):
        assert value not in caplog.text


def test_what_a_contacts_record_lacks_is_said_not_left_blank(
    agent: TestClient,  # noqa: F811
) -> None:
    services = agent.app.state.services  # type: ignore[attr-defined]
    associate(services, "acme")
    # Abandoned in the queue: no agent, and no end, reason or queue in the record.
    abandoned = ctr("c-detail-2", address="+17208401078", Agent=None, Queue=None)
    for member in ("DisconnectTimestamp", "DisconnectReason"):
        del abandoned[member]
    assert send(services, abandoned).accepted == 1
    shown = labelled(opened_contact(agent, "c-detail-2"))
    assert shown["Channel"] == "VOICE" and shown["Start"] == "2022-04-08 14:59:38 UTC"
    for label in ("End", "Duration", "Agent", "Queue", "Disconnect reason"):
        assert shown[label] == "Not recorded", label


def test_a_contact_record_type_of_an_integration_is_a_contact_record_too(
    agent: TestClient,  # noqa: F811
) -> None:
    services = agent.app.state.services  # type: ignore[attr-defined]
    associate(services, "acme", object_type_name="CTR-NoInferred")
    assert send(services, ctr("c-detail-3", address="+17208401079")).accepted == 1
    page = opened_contact(agent, "c-detail-3")
    assert "<title>Contact record" in page
    assert labelled(page)["Contact ID"] == "c-detail-3"
    assert folded_json(page)["ContactId"] == "c-detail-3"


def test_another_objects_record_page_is_its_json_as_before(
    agent: TestClient,  # noqa: F811
    customer: tuple[str, list[str]],  # noqa: F811
) -> None:
    profile_id, _ = customer
    profile = agent.get(f"/agent/domains/acme/profiles/{profile_id}").text
    page = agent.get(link_named(profile, OPEN_FIRST)).text
    assert "contact-details" not in page and "<details" not in page
    shown = re.search(
        r'<pre class="record"[^>]*aria-labelledby="record-heading"[^>]*>(.*?)</pre>', page, re.S
    )
    assert shown and "ref" in json.loads(unescape(shown[1]))
    assert re.search(r"<h1[^>]*>Orders record</h1>", page)
