"""What each role may call. Admins may call everything; agents work with customers' profiles
and objects (read, search, create, update) and may read the configuration they need for that."""

from __future__ import annotations

from openprofiles.errors import AccessDenied

AGENT_OPERATIONS = frozenset(
    {
        # profiles
        "SearchProfiles",
        "BatchGetProfile",
        "CreateProfile",
        "UpdateProfile",
        "AddProfileKey",
        # profile objects
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


def authorize(role: str, operation: str) -> None:
    if role == "admin":
        return
    if role == "agent" and operation in AGENT_OPERATIONS:
        return
    raise AccessDenied(f"The role {role} is not allowed to call {operation}.")
