"""How a contact record finds its profile besides its customer's phone number or email address:
contacts without a usable customer endpoint, transfer legs, and the agent's latest link.

Contacts without a customer endpoint (a TASK, a web chat that gave no email address, a VOIP or
CONTACT_FLOW endpoint, a withheld caller's number that cannot be read: contacts.records): the
contact-record templates (CTR, CTR-NoInferred, CTR-AutoAssociateOnly) find a profile by
`_ctrContactId` and then by the customer's phone number or email address (spec §2.2, §3.2). Such
a contact has nothing but its ContactId, which no profile holds unless someone linked it, so the
templates' "no match: create an inferred profile" would give each task its own empty profile: a
profile of nobody, that no later contact can ever join, and that an agent searching the customer
never finds. Amazon Connect links tasks to profiles through the flow's or the agent's
association (AddProfileKey `_ctrContactId`, the "Customer profiles" flow block), not by an
endpoint. So the choice here:

* such a contact never creates a profile;
* it is stored on the profile it is linked to when there is one: its `_ctrContactId` on one
  live profile (a contact-start event's link, an agent's AddProfileKey, an earlier version of
  its record), or else the profile of the contact it continues (`continued_contact_ids`:
  PreviousContactId, then InitialContactId — a transfer leg, a task created from a call —
  then RelatedContactId: the contact a task, chat or call was started for with
  StartTaskContact and the like, whose attributes it copies), whose `_ctrContactId` is then
  indexed on that profile as a start event's would be;
* otherwise it is rejected with the reason (`no_profile_reason`) and, as every record the
  pipeline cannot place, kept in the domain's dead-letter queue (category `no_profile`), from
  which `openprofiles dlq retry` applies it once an agent has linked the contact. A start event
  of such a contact links nothing and says why, as CTR-AutoAssociateOnly's unmatched event.

Contact records come in no order: a transfer leg or a task can come before the contact it
continues — in the same batch, in another request, on another Kinesis shard. So:

* in a batch, a record without an endpoint is applied after the records of the contacts it
  continues that come later in the batch (contacts.service `_continued_first`); the batch's
  order is kept otherwise, and a batch in which no record continues another (the hot path:
  records with endpoints) is not even looked at;
* across batches, a record that continues a contact of which nothing is applied yet does not
  go to the dead-letter queue at once, with a reason that would be false a moment later: it
  waits. It is kept, as the records no domain can take now are (contacts.kept: the
  unrouted store, sealed under the system key, counted by `openprofiles instances
  unrouted`, its reason `waiting_reason`), with a `contact_awaited` row per contact
  that would place it (the blind-index digests of the contacts it continues and of its own
  ContactId: an agent's link of it places it too). The batch (or start event) that applies
  one of those contacts to a profile, or the agent's AddProfileKey that links one, sends the
  records waiting for it on in its own transaction, and those waiting for them in turn
  (contacts.waiting); the kept-records sweep (`send_kept_on` without instances: the server's
  `kept_records_task`, `openprofiles instances send-kept`, the Kinesis connector) is left
  with those a sender skipped (another held them). Either applies it in the same transaction
  that takes it out of the store, by the rules of any delivery. A record waits at most
  `WAIT_SECONDS`: then the sweep sends it on all the same, and if it still finds no profile
  it goes to the dead-letter queue (`no_profile`), its reason saying how long it waited.
  Sent on, a record never waits again, so every record ends applied or dead-lettered, and
  none is lost: it leaves the store only in the transaction that applies or dead-letters it
  (several senders take disjoint rows: each deletes, or locks, its rows before sending them,
  as for held ones). Dead letters are not re-driven (they are sealed, with nothing to find
  them by). A batch, or a link, pays one indexed query (per domain) for the records waiting
  for its contacts.

Types of one's own are left to their own keys: what they key on is theirs to say.

The agent's latest link (AddProfileKey `_ctrContactId`) wins: `profile_key` rows carry no
time, so the order of two links made before the record arrives could not be told afterwards,
and the record was dead-lettered as ambiguous. The order is kept at link time instead
(`mark_earlier_links`, a profiles.service.on_keys_added hook): an agent's new link turns the
agent's earlier links of that contact on other profiles into `RELINKED_ORIGIN` rows. They stay
(AddProfileKey adds a value without taking it off other profiles, as in Customer Profiles, and
SearchProfiles and the agent pages still find the contact on both until its record comes), but
no longer count as the agent's choice: when the record comes, the one explicit link left wins
and the others are removed (contacts.service `_honour_forced_links`), as a single re-link
already did. A merge moves such a row with its profile; undone, it gives it back as it is
then (identity.service: an explicit link superseded since goes back `RELINKED_ORIGIN`), so
the later link still wins.

Links of one contact are made one at a time: AddProfileKey of `_ctrContactId` takes the
contact's lock (`lock_linked_contacts`), the one its deliveries take, before it locks the
profile (store.advisory's order), and the second of two links at once waits for the first and
finds it. Without it, two agents linking the contact to two profiles at once (two server
processes) would each find no other link, the other not committed: both would stay the agent's,
and the record be dead-lettered as ambiguous. DeleteProfileKey takes it too, so that the agent
pages' move of a link (an unlink and a link in one transaction) takes it before any profile.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import and_, delete, exists, update

from openprofiles.contacts.models import ContactRecord
from openprofiles.contacts.records import CONTINUED_FIELDS, MAX_CONTACT_ID_CHARS
from openprofiles.context import Tx
from openprofiles.object_types.models import ObjectType
from openprofiles.profiles.service import EXPLICIT_ORIGIN, on_keys_added, on_keys_changing
from openprofiles.store.advisory import take_locks
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import profile_key

CONTACT_KEY = "_ctrContactId"
# The templates whose keys are exactly `_ctrContactId` and the customer's phone number and
# email address (a type made from one has its keys: TemplateId excludes Keys).
CONTACT_TEMPLATES = frozenset({"CTR", "CTR-NoInferred", "CTR-AutoAssociateOnly"})
# The endpoint types the templates read a phone number or an email address from.
CUSTOMER_ENDPOINT_TYPES = frozenset({"TELEPHONE_NUMBER", "EMAIL_ADDRESS"})
# The origin of an agent's `_ctrContactId` link that a later link of the contact to another
# profile superseded (a marker: "@" as profiles.service's, store/schema/core.py).
RELINKED_ORIGIN = "@relinked"
# How long a record waits for the contact it continues before it is dead-lettered (see the
# module): records of one customer's contacts come within minutes of each other, and an
# operator sees what waits meanwhile (the unrouted store).
WAIT_SECONDS = 3600


def needs_link(object_type: ObjectType, record: ContactRecord) -> bool:
    """Whether the record, of a contact-record template's type, has no customer endpoint the
    template can find or create a profile by: only a link can place it."""
    if object_type.template_id not in CONTACT_TEMPLATES:
        return False
    endpoint = record.customer_endpoint
    return endpoint is None or endpoint.type not in CUSTOMER_ENDPOINT_TYPES


def continued_contact_ids(record: ContactRecord) -> list[str]:
    """The ContactIds of the contacts the record continues (`CONTINUED_FIELDS`, in order),
    those that can be ContactIds; never its own."""
    out: list[str] = []
    for name in CONTINUED_FIELDS:
        value = record.source.get(name)
        if (
            isinstance(value, str)
            and value.strip() == value
            and 0 < len(value) <= MAX_CONTACT_ID_CHARS
            and value != record.contact_id
            and value not in out
        ):
            out.append(value)
    return out


def no_profile_reason(record: ContactRecord, *, waited: timedelta | None = None) -> str:
    """Why a contact without a customer endpoint is placed on no profile, and what to do;
    `waited`: after it waited that long for the contact it continues."""
    continued = continued_contact_ids(record)
    if continued:
        earlier = (
            f"the contact it continues ({', '.join(continued)}) is on no profile of the domain"
        )
        if waited is not None:
            earlier += f" (the record was kept {_how_long(waited)} waiting for it)"
    else:
        earlier = (
            "it continues no earlier contact (PreviousContactId, InitialContactId, "
            "RelatedContactId)"
        )
    return (
        f"{_no_endpoint(record)}; it is not linked to a profile ({CONTACT_KEY}), and "
        f"{earlier}. No empty profile is created for it: link the contact to its customer's "
        f"profile (AddProfileKey {CONTACT_KEY}), then retry the record."
    )


def waiting_reason(record: ContactRecord) -> str:
    """Why a record that continues a contact of which nothing is applied yet is kept, and for
    how long (see the module)."""
    continued = ", ".join(continued_contact_ids(record))
    return (
        f"{_no_endpoint(record)}, and nothing of the contact it continues ({continued}) is "
        f"applied yet. The record is kept, and applied once that contact's record or start "
        f"event comes or either contact is linked to a profile (AddProfileKey {CONTACT_KEY}); "
        f"after {WAIT_SECONDS // 60} minutes without, it is dead-lettered."
    )


def _how_long(waited: timedelta) -> str:
    """A wait in whole minutes (hours past two), as it is said in a reason."""
    minutes = int(waited.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 120:
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    return f"{minutes // 60} hours"


def _no_endpoint(record: ContactRecord) -> str:
    endpoint = record.customer_endpoint
    unreadable = record.unreadable_endpoint
    if unreadable is not None:
        # Not the Address itself: a customer's, or what stands for one.
        what = "a telephone number" if unreadable == "TELEPHONE_NUMBER" else "an email address"
        has = f"has a {unreadable} CustomerEndpoint whose Address cannot be read as {what}"
    elif endpoint is None:
        has = "has no CustomerEndpoint"
    else:
        has = (
            f"has a {endpoint.type} CustomerEndpoint, neither a telephone number nor an email "
            "address"
        )
    kind = f"{record.channel} contact" if record.channel else "contact"
    return (
        f"The {kind} {record.contact_id} {has}, so no profile can be found by its customer's "
        "phone number or email address"
    )


def mark_earlier_links(
    tx: Tx, domain_name: str, profile_id: str, key_name: str, digests: list[bytes]
) -> None:
    """An agent's AddProfileKey(`_ctrContactId`) on `profile_id` makes the agent's earlier
    links of those contacts on other profiles earlier ones (`RELINKED_ORIGIN`; see the
    module). A profile that already has such a row for the contact (linked, superseded, linked
    again) keeps that one."""
    if key_name != CONTACT_KEY or not digests:
        return
    twin = profile_key.alias("twin")
    has_twin = exists().where(
        twin.c.domain_name == profile_key.c.domain_name,
        twin.c.key_name == profile_key.c.key_name,
        twin.c.digest == profile_key.c.digest,
        twin.c.profile_id == profile_key.c.profile_id,
        twin.c.origin == RELINKED_ORIGIN,
    )
    for chunk in in_chunks(sorted(set(digests))):
        earlier = and_(
            profile_key.c.domain_name == domain_name,
            profile_key.c.key_name == CONTACT_KEY,
            profile_key.c.digest.in_(chunk),
            profile_key.c.profile_id != profile_id,
            profile_key.c.origin == EXPLICIT_ORIGIN,
        )
        tx.conn.execute(delete(profile_key).where(earlier, has_twin))
        tx.conn.execute(update(profile_key).where(earlier).values(origin=RELINKED_ORIGIN))


def lock_contacts(tx: Tx, domain_name: str, digests: Iterable[bytes]) -> None:
    """Serialise the writers of these contacts, by their `_ctrContactId` digests (PostgreSQL;
    SQLite has a single writer): their deliveries (contacts.service) and the links made of
    them, in one global order, so overlapping sets cannot deadlock on them."""
    take_locks(tx, (("contact", domain_name, digest) for digest in digests))


def lock_linked_contacts(tx: Tx, domain_name: str, key_name: str, digests: list[bytes]) -> None:
    """AddProfileKey's and DeleteProfileKey's part here (profiles.service.on_keys_changing):
    the contacts they link or unlink are locked before the profile (see the module)."""
    if key_name == CONTACT_KEY:
        lock_contacts(tx, domain_name, digests)


if mark_earlier_links not in on_keys_added:
    on_keys_added.append(mark_earlier_links)
if lock_linked_contacts not in on_keys_changing:
    on_keys_changing.append(lock_linked_contacts)
