"""Records of the contacts package: a parsed contact record, what became of it, and the
contact-history summary the agent pages show."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

CHANNELS = frozenset({"VOICE", "CHAT", "TASK", "EMAIL"})
ENDPOINT_TYPES = frozenset(
    {"TELEPHONE_NUMBER", "VOIP", "CONTACT_FLOW", "CONNECT_PHONENUMBER_ARN", "EMAIL_ADDRESS"}
)


class ContactRecordInvalid(Exception):
    """The record is not a usable contact record; `reason` says why."""

    def __init__(self, reason: str, contact_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.contact_id = contact_id


class BodyInvalid(Exception):
    """A body or file of contact records that is neither a JSON value, a JSON array nor JSON
    lines. `what` completes "The body is ..." (or "FILE is ...") with the JSON parser's
    position."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True)
class Endpoint:
    address: str
    type: str


@dataclass(frozen=True)
class ContactRecord:
    contact_id: str
    instance_arn: str
    channel: str | None
    customer_endpoint: Endpoint | None
    initiation: datetime | None
    last_update: datetime | None
    # The record as parsed, and as received (what is stored and dead-lettered).
    source: Mapping[str, Any]
    raw: str
    # The Type of a CustomerEndpoint whose Address cannot be read as one (a withheld caller's
    # "anonymous", "Restricted"): the record counts as one without an endpoint
    # (`customer_endpoint` None; contacts.records `_endpoint`), and its endpoint is not mapped.
    unreadable_endpoint: str | None = None

    @property
    def source_to_map(self) -> Mapping[str, Any]:
        """What the pipeline maps the record from: its source, less a CustomerEndpoint that
        cannot be read. Mapped, a withheld caller's "anonymous" would become the linked
        profile's PhoneNumber and a `_ctrPhone` every such caller shares. The stored object is
        the record as received all the same (`raw`)."""
        if self.unreadable_endpoint is None:
            return self.source
        return {name: value for name, value in self.source.items() if name != "CustomerEndpoint"}


@dataclass(frozen=True)
class Rejection:
    contact_id: str | None
    message: str
    # A record kept waiting for a contact it continues: the message id of the kept row it waits
    # as (contacts.kept), by which a later part of the same batch that sends it on tells it for
    # the batch's own (contacts.service `claim_woken`).
    kept_as: str | None = None
    # Its place among the items the intake was given (0-based), so that an answer can say which
    # record it is even when its ContactId cannot be read (POST /contact-records: contacts.http
    # makes it the record's place in the body); None where the intake did not place it. A
    # record the batch kept waiting and then sent on itself keeps its place (`claim_woken`).
    index: int | None = None


@dataclass
class BatchOutcome:
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    # Of the accepted: repeated deliveries and older versions that changed nothing.
    unchanged: int = 0
    created_profiles: int = 0
    # Of the rejected: kept because their domain could not take records then (its key
    # unusable), to be sent on once it can (contacts.sweep.replay_held).
    held: int = 0
    # Of the held: kept waiting for a contact they continue, whose record has not come yet
    # (contacts.links), to be applied once it does. Not among the unrouted below.
    waiting: int = 0
    # Where the rejected went, for the file loader to say how to see each kind: the domains'
    # dead-letter stores (by domain), and the unrouted store (by instance ARN; None: kept
    # without one, as no InstanceARN could be read). The held are among the unrouted, but
    # for the waiting.
    dead_lettered: dict[str, int] = field(default_factory=dict)
    unrouted: dict[str | None, int] = field(default_factory=dict)
    # Not of the batch: the records kept waiting for a contact it applied, which it sent on
    # (contacts.waiting); None when there were none. Those the batch itself kept waiting (a
    # later group or transaction of it brought their contact) are its own, reported as what
    # they became (contacts.service `claim_woken`).
    woken: BatchOutcome | None = None
    # Of kept records sent on (a replay, a wake): the outcome of each alone, by its message id
    # in the kept-records store, for `claim_woken`. Summed by the one who claims (a wake, a
    # request of several transactions), not by `add_outcome`: a sweep's runs need none.
    sent: dict[str, BatchOutcome] = field(default_factory=dict)

    @property
    def sent_on(self) -> int:
        """Records that went somewhere: accepted, or rejected for good (not kept again)."""
        return self.accepted + self.rejected_for_good

    @property
    def rejected_for_good(self) -> int:
        """Rejected and not held: dead-lettered, or kept unrouted for want of an association."""
        return len(self.rejected) - self.held


@dataclass(frozen=True)
class ContactLink:
    """What a contact-start event did."""

    contact_id: str
    domain_name: str
    profile_id: str | None
    created_profile: bool
    # What the caller is told besides the link (POST /contact-events' Message): why the contact
    # is not linked to a profile (CTR-AutoAssociateOnly found none, or the contact has no
    # customer endpoint and nothing links it: contacts.links), or, for a linked contact, what of
    # the event was ignored (screen-pop attributes that ask for no search SearchProfiles takes).
    reason: str | None = None


@dataclass(frozen=True)
class ContactSummary:
    contact_id: str
    channel: str | None
    start: datetime | None
    end: datetime | None
    duration_seconds: int | None
    agent: str | None
    queue: str | None
    disconnect_reason: str | None
    raw: Mapping[str, Any]
    # The stored object's UNIQUE key digest (hex) and when it was last written, when the
    # summary is of a stored record.
    unique_key: str | None = None
    updated_at: datetime | None = None
