"""The choice of contact-record template on the admin pages that associate a contact-centre
instance (the enable wizard's instance step, the instances page): which of the three templates
its records are ingested as, and the check of the posted value.

The pages offered none before: every instance got `CTR`, which never finds a profile made by the
API, an agent or a CRM, so such a customer got a second profile on their first contact (docs/
contact-feeds.md compares the three). The default stays the API's (`CTR`).
"""

from __future__ import annotations

from dataclasses import dataclass

from openprofiles.contacts.links import CONTACT_TEMPLATES
from openprofiles.integrations.models import DEFAULT_INSTANCE_OBJECT_TYPE

FIELD = "object_type_name"
LABEL = "Contact-record template"


@dataclass(frozen=True)
class TemplateOption:
    value: str
    label: str
    hint: str


# In the pages' order, the default first; the hints say what each does with a profile made
# otherwise than by contacts (docs/contact-feeds.md, "Which template?").
OPTIONS = (
    TemplateOption(
        DEFAULT_INSTANCE_OBJECT_TYPE,
        "CTR (the default)",
        "Finds only the profiles its own contacts created: a customer whose profile was made "
        "by the API, an agent or a CRM gets a second profile on their first contact.",
    ),
    TemplateOption(
        "CTR-NoInferred",
        "CTR-NoInferred",
        "Finds any profile by its phone number or email address, including those made by the "
        "API, agents or a CRM; a caller with no profile gets a new one.",
    ),
    TemplateOption(
        "CTR-AutoAssociateOnly",
        "CTR-AutoAssociateOnly",
        "Finds any profile by its phone number or email address, like CTR-NoInferred, but "
        "never creates one: a contact from an unknown caller waits in the dead-letter queue.",
    ),
)
VALUES = frozenset(o.value for o in OPTIONS)
assert VALUES == CONTACT_TEMPLATES, "a contact-record template the pages do not offer"


def chosen_template(posted: str) -> tuple[str, str | None]:
    """The template a form asks for and the field's error, if any. Left out or empty (a form
    posted by a script) means the default, as on the page; any other value is refused rather
    than read as the default, so a mistyped choice associates nothing."""
    if not posted:
        return DEFAULT_INSTANCE_OBJECT_TYPE, None
    if posted in VALUES:
        return posted, None
    names = ", ".join(o.value for o in OPTIONS)
    return DEFAULT_INSTANCE_OBJECT_TYPE, f"Choose one of the templates ({names}), not {posted!r}."


def keep_it(current: str) -> str:
    """The error for a template other than the one an instance already in the domain has: its
    records are stored under that type, and those sent from now on would be stored apart from
    them under another (docs/contact-feeds.md says how to change the template instead)."""
    return (
        f"This instance is already associated with this domain, its records ingested as "
        f"{current}. Choose {current} to keep it; records ingested as another template would be "
        "kept apart from those already stored (docs/contact-feeds.md says how to change it)."
    )


def keep_on_move(current: str, posted: str) -> str:
    """The error for a move that would change an instance's template with it: the new domain
    would then find callers' profiles otherwise than the instance's contacts do now."""
    return (
        f"This instance's records are ingested as {current} now. Choose {current} to move it "
        f"as it is; {posted} would change how its contacts find the caller's profile in the new "
        "domain (docs/contact-feeds.md compares the templates and says how to change one)."
    )
