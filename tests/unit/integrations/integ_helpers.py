"""Helpers shared by the integrations, contacts and flows tests: domains and contact records."""

from __future__ import annotations

import json
from typing import Any

from openprofiles.contacts.models import BatchOutcome
from openprofiles.contacts.records import split_body
from openprofiles.contacts.service import ingest_contact_items
from openprofiles.context import Services
from openprofiles.domains.service import create_domain
from openprofiles.integrations.service import associate_instance

INSTANCE = "arn:aws:connect:us-east-1:111122223333:instance/1d908e11-3d5f-4cfb-b34d-1e7e0f216898"
OTHER_INSTANCE = (
    "arn:aws:connect:us-east-1:111122223333:instance/2f908e11-aaaa-bbbb-cccc-1e7e0f2168ff"
)


def make_domain(services: Services, name: str, key: str | None = None) -> str:
    """A domain under `key` (a key identifier; the server's default key when None)."""
    wrapped = services.keys.new_domain_key(name, key)
    with services.write() as tx:
        create_domain(
            tx,
            domain_name=name,
            config={"DefaultExpirationDays": 30},
            key_id=wrapped.key_id,
            wrapped_key=wrapped.wrapped,
        )
    return name


def associate(
    services: Services, domain: str, instance: str = INSTANCE, *, move: bool = False, **kw: Any
) -> None:
    with services.write() as tx:
        associate_instance(tx, domain_name=domain, instance_arn=instance, move=move, **kw)


def ctr(
    contact_id: str,
    *,
    channel: str = "VOICE",
    address: str | None = "+17208401003",
    instance: str = INSTANCE,
    start: str = "2022-04-08T14:59:38Z",
    end: str = "2022-04-08T15:01:22Z",
    last_update: str = "2022-04-08T15:03:02Z",
    agent: str = "admin1",
    **more: Any,
) -> dict[str, Any]:
    """A contact record shaped like Amazon Connect's (spec §3.1)."""
    endpoint = None
    if address is not None:
        endpoint = {
            "Address": address,
            "Type": "TELEPHONE_NUMBER" if channel == "VOICE" else "EMAIL_ADDRESS",
        }
    record: dict[str, Any] = {
        "AWSAccountId": "111122223333",
        "AWSContactTraceRecordFormatVersion": "2017-03-10",
        "Agent": {"Username": agent, "AgentInteractionDuration": 33},
        "Attributes": {"greetingPlayed": "true"},
        "Channel": channel,
        "ContactId": contact_id,
        "CustomerEndpoint": endpoint,
        "DisconnectReason": "CUSTOMER_DISCONNECT",
        "DisconnectTimestamp": end,
        "InitiationMethod": "INBOUND",
        "InitiationTimestamp": start,
        "InstanceARN": instance,
        "LastUpdateTimestamp": last_update,
        "Queue": {"Name": "BasicQueue", "Duration": 7},
        "SystemEndpoint": {"Address": "+14065003978", "Type": "TELEPHONE_NUMBER"},
    }
    record.update(more)
    return record


def send(services: Services, *records: Any) -> BatchOutcome:
    body = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records)
    with services.write() as tx:
        return ingest_contact_items(tx, split_body(body))
