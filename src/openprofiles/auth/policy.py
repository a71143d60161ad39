"""What each role may call, and what it is shown. Admins may call everything and see everything;
agents work with customers' profiles and objects (read, search, create, update) and may read the
configuration they need for that, but not what only an administrator can act on.

PutProfileObject and BatchPutProfileObject stay open to agents for object types of their own
(an agent's tools may keep records on a profile; the agent pages write no objects, and call the
feature services, not this API, so nothing here limits them). What agents may not write are the
objects an integration feeds (`authorize_object_write`): contact records, which the contact
feeds (/contact-records, /contact-events) take only from admins, and a flow's records. An agent
could otherwise forge or overwrite them, out of the order the feeds keep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from copy import copy
from typing import Any

from openprofiles.blocking import Deferred
from openprofiles.domains.service import told_to_agents, unreadable_domain
from openprofiles.errors import AccessDenied, ServiceError

AGENT_OPERATIONS = frozenset(
    {
        # profiles
        "SearchProfiles",
        "BatchGetProfile",
        "CreateProfile",
        "UpdateProfile",
        "AddProfileKey",
        # profile objects (not of a type an integration feeds: authorize_object_write)
        "ListProfileObjects",
        "PutProfileObject",
        "BatchPutProfileObject",
        "BatchGetCalculatedAttributeForProfile",
        "GetCalculatedAttributeForProfile",
        "ListCalculatedAttributesForProfile",
        # configuration an agent's tools read to show a profile
        "ListDomains",
        "GetDomain",
        "ListProfileObjectTypes",
        "GetProfileObjectType",
    }
)

# Domain members an agent's GetDomain leaves out, as the agent pages do: the key's ARN names the
# account and the key that protects every record, the queue's URL where rejected records go.
# Neither is needed to show a profile.
DOMAIN_MEMBERS_HIDDEN_FROM_AGENTS = ("DefaultEncryptionKey", "DeadLetterQueueUrl")
# And where the matching results are exported (the S3 bucket and key of Matching's and
# RuleBasedMatching's ExportingConfig): an administrator's set-up, as the queue is.
MATCHING_MEMBERS_WITHOUT_EXPORT_FOR_AGENTS = ("Matching", "RuleBasedMatching")
# The same of an object type: its own EncryptionKey (a KMS key's ARN) when it has one.
OBJECT_TYPE_MEMBERS_HIDDEN_FROM_AGENTS = ("EncryptionKey",)


def authorize(role: str, operation: str) -> None:
    if role == "admin":
        return
    if role == "agent" and operation in AGENT_OPERATIONS:
        return
    raise AccessDenied(f"The role {role} is not allowed to call {operation}.")


def writes_fed_object_types(role: str) -> bool:
    """Whether `role` may write objects of a type an integration feeds (contact records, a
    flow's records); `authorize_object_write` refuses the others."""
    return role == "admin"


def authorize_object_write(role: str, operation: str, type_name: str, *, fed: bool) -> None:
    """AccessDenied unless `role` may write objects of `type_name` with `operation`; `fed` says
    whether an integration feeds the type (objects.handlers finds that in the domain)."""
    if fed and not writes_fed_object_types(role):
        raise AccessDenied(
            f"The object type {type_name} is fed by an integration (a contact centre's contact "
            f"records, or a flow): only an admin may write its objects with {operation}."
        )


def domain_shown_to(role: str, domain: dict[str, Any]) -> dict[str, Any]:
    """A domain's GetDomain answer as a caller of `role` sees it."""
    shown = _without(role, domain, DOMAIN_MEMBERS_HIDDEN_FROM_AGENTS)
    for matching in MATCHING_MEMBERS_WITHOUT_EXPORT_FOR_AGENTS:
        if shown is not domain and isinstance(shown.get(matching), dict):
            shown[matching] = _without(role, shown[matching], ("ExportingConfig",))
    return shown


def object_type_shown_to(role: str, object_type: dict[str, Any]) -> dict[str, Any]:
    """An object type's GetProfileObjectType answer as a caller of `role` sees it."""
    return _without(role, object_type, OBJECT_TYPE_MEMBERS_HIDDEN_FROM_AGENTS)


def _without(role: str, answer: dict[str, Any], hidden: tuple[str, ...]) -> dict[str, Any]:
    if role == "admin":
        return answer
    return {k: v for k, v in answer.items() if k not in hidden}


def error_shown_to(role: str, error: ServiceError) -> ServiceError:
    """`error` as a caller of `role` is told it. An agent is not given the key provider's message
    of a domain whose key cannot be used (the key's ARN with the account id, the KMS endpoint,
    what to change) but what the agent pages say (domains.service.told_to_agents)."""
    if role == "admin" or not unreadable_domain(error):
        return error
    shown = copy(error)
    shown.caller_message = told_to_agents(error)
    return shown


@contextmanager
def errors_shown_to(role: str) -> Iterator[None]:
    """The API errors of the block, raised as a caller of `role` is told them."""
    try:
        yield
    except ServiceError as error:
        shown = error_shown_to(role, error)
        if shown is error:
            raise
        # With the same cause, so that the operator's logs keep the provider's message.
        raise shown from error.__cause__


def answer_shown_to(role: str, answer: Any) -> Any:
    """A handler's answer for a caller of `role`: a `Deferred` one's error, once it comes, as
    `errors_shown_to` raises it; any other answer as it is."""
    if role == "admin" or not isinstance(answer, Deferred):
        return answer
    return Deferred(_shown_when_answered(role, answer.answer))


async def _shown_when_answered(role: str, answer: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    with errors_shown_to(role):
        return await answer
