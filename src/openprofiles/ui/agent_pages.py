"""The agent workspace: choose a domain, search profiles, read a profile (with its contact
history and other objects), create and edit profiles,
and the screen-pop address that opens the profile linked to a live contact.

What an agent searches for (a phone number, an email, a name) never appears in an address:
access logs, proxies and the browser's history keep addresses. The search form is posted,
and its results, their pages and the "create a profile" link that follows a search carry the
search sealed (services.tokens, scoped to the page, the domain and the user who searched), like
API NextTokens: one token, or several when the search is longer than a token holds
(seal_search). Such an address seen elsewhere (another agent's browser history, a proxy's log)
opens nothing for anyone else (_search_scope). An address with the search in plain (`?q=`, from
before searches were sealed: a bookmark, a link in another application) is sent on to the
sealed one. So do the links to a profile's records and to their older pages: a record is known
by a digest of its unique key, a stable stand-in for the customer's value (an email, an account
number), so it is sealed too (scoped to the domain, the profile and the record type). Page
titles name no customer either: the browser's history keeps them with the addresses.

A live contact with no profile linked (or the wrong one) is linked by the agent: its id goes,
as a plain `contact` parameter (a contact id is not a customer's value), from the contact's
page through the search, its pages and the creation form to the profile, whose button adds the
`_ctrContactId` key (link_here). A contact id no domain the agent sees has heard of (no link,
no event or record of it applied: a mistyped id) is said to be unknown, and nothing else.

An agent limited to some domains (its domain scope: users.service, read with its session on
each request) is offered only those domains (the home page, a contact's page), and every page
whose address names another answers as for a domain that does not exist (`in_scope`), before
anything of the request is looked at: existing or not, every domain outside the scope gets the
same answer, so a scoped agent cannot tell which other domains exist, and sees no customer of
theirs.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, unquote

from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.contacts.links import lock_linked_contacts
from openprofiles.contacts.records import SEARCH_KEY_NAME
from openprofiles.contacts.routing import applied_states, contact_digest
from openprofiles.contacts.service import contact_screen_pop_search
from openprofiles.contacts.shared_endpoint import shared_endpoint
from openprofiles.context import Tx
from openprofiles.domains import service as domains
from openprofiles.errors import BadRequest, NotFound, ServiceError
from openprofiles.normalize import normalize
from openprofiles.profiles import service as profiles
from openprofiles.profiles.keys import NAME_FIELDS
from openprofiles.profiles.models import ADDRESS_FIELDS, KeyMatch, ProfileRecord
from openprofiles.ui import flash, history, submissions
from openprofiles.ui import profile_form as pf
from openprofiles.ui.admin_pages import all_domain_names
from openprofiles.ui.web import UI, Endpoint, form_text, show_profiles, unreadable_domain
from openprofiles.users.models import WebSession

# The create form's one-time token (ui.submissions).
SUBMISSION_FIELD = "submission"

SEARCH_PAGE = 20
# Pages an agent can go through, one after another (1000 results): each one's cursor is in the
# address of the next, which must stay well within what a server accepts.
MAX_SEARCH_PAGES = 50
CONTACT_KEY = "_ctrContactId"
# The live contact an agent is finding the profile of, carried from the contact's page through
# the search to the profile, where it can be linked. A contact id is the contact centre's
# identifier of a call or chat, not a customer's value: it may be in an address as it is.
CONTACT_PARAM = "contact"
INVALID_CONTACT = (
    "This contact id is not valid: a contact id has 1 to 255 characters, none of them a control "
    "character. Open the contact again from the contact centre."
)
# SearchProfiles' KeyValues items: 1 to 255 characters (the API counts them as len() does).
MAX_SEARCH_TEXT = 255
# SearchProfiles' KeyName (the model's `name`): what a custom key may be. Bounded here as the
# search is sealed into the results' addresses, which must stay short.
KEY_NAME = SEARCH_KEY_NAME
PREDEFINED_KEYS = frozenset(key for key, _ in pf.PREDEFINED_SEARCH_KEYS)
SEARCH_KEY_CHOICES = frozenset({"auto", "custom", *PREDEFINED_KEYS})
KEY_VALUES_SHOWN = 5
SEARCH_SCOPE = "ui/agent-search"
INVALID_SEARCH = (
    "This search address is not valid: it was changed, is for another domain or another user, "
    "or is more than a day old. Search again."
)
# A search sent with nothing typed (or only spaces): said, not a silent return to the empty
# page, and saying what the box takes (as its hint does), not only that it was empty.
EMPTY_SEARCH = "Type a phone number, email address, name, account number or profile id to search."
# The cursors of the pages before a page: profile ids, 32 hex digits each, one after another.
CURSORS = re.compile(r"(?:[0-9a-f]{32})*")
CURSOR_LENGTH = 32
# A token (TokenCodec) holds at most 1024 characters, and sealing makes a search longer: the
# token's JSON writes a non-ASCII character as \uXXXX (12 characters for an emoji), then comes
# AES-GCM's nonce and tag and base64. A search of 255 characters in any script, with the cursors
# of the pages before it, does not fit in one: its JSON's UTF-8 is cut into parts of
# SEALED_PART_BYTES, each sealed in a token of its own (as base64: 480 bytes make a token of
# about 980 characters), the tokens joined by "." (not in a token's alphabet).
SEALED_PART_BYTES = 480
SEARCH_PARTS = "."
OBJECT_SCOPE = "ui/agent-object"
HISTORY_SCOPE = "ui/agent-history"
INVALID_OBJECT_LINK = (
    "This link to a record is not valid: it was changed, is for another profile, or is more "
    "than a day old. Open the record again from the profile."
)
# Above a profile form sent while its domain's key could not be used, given back filled in
# (unsaved_form); `reason` is web.UI.unreadable_reason's, in plain words for an agent.
NOT_SAVED = (
    "Nothing was saved. {reason} What you typed is still in the form below: send it again once "
    "the customer data can be read."
)


@dataclass(frozen=True)
class SearchRequest:
    """A search as the agent typed it, and the page of its results: `cursors` are where the
    pages after the first start (the last profile id of the page before), so page N has N-1,
    and its "Previous page" is the same search with its last cursor dropped."""

    text: str = ""
    key: str = "auto"
    custom_key: str = ""
    cursors: tuple[str, ...] = ()

    @property
    def page(self) -> int:
        return len(self.cursors) + 1

    @property
    def after(self) -> str | None:
        """The profile id this page starts after (None: the first page)."""
        return self.cursors[-1] if self.cursors else None

    def problem(self) -> str:
        """What is wrong with the search, or ""."""
        if len(self.text) > MAX_SEARCH_TEXT:
            return f"Search for at most {MAX_SEARCH_TEXT} characters."
        if self.key == "custom" and not self.custom_key:
            return "Enter the name of the key to search, e.g. _ctrContactId."
        if self.key == "custom" and not KEY_NAME.fullmatch(self.custom_key):
            return (
                "A key name is 1 to 64 letters, digits, '_' and '-', e.g. _ctrContactId "
                "(as the API's KeyName)."
            )
        if self.key not in SEARCH_KEY_CHOICES:
            return "Choose a key to search from the list."
        return ""

    def keys(self) -> list[str]:
        """The keys to try, in order."""
        if self.key == "custom":
            return [self.custom_key] if self.custom_key else []
        if self.key == "auto":
            return pf.search_keys_for(self.text)
        return [self.key]

    def first_page(self) -> SearchRequest:
        return replace(self, cursors=())

    def previous_page(self) -> SearchRequest:
        return replace(self, cursors=self.cursors[:-1])

    def next_page(self, cursor: str) -> SearchRequest:
        return replace(self, cursors=(*self.cursors, cursor))

    def state(self) -> dict[str, str]:
        state = {"q": self.text, "k": self.key, "c": self.custom_key, "a": "".join(self.cursors)}
        return {k: v for k, v in state.items() if v}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SearchRequest:
        values = {k: state.get(k, "") for k in ("q", "k", "c", "a")}
        if not all(isinstance(v, str) for v in values.values()) or not CURSORS.fullmatch(
            values["a"]
        ):
            raise BadRequest(INVALID_SEARCH)
        joined = values["a"]
        cursors = tuple(joined[i : i + CURSOR_LENGTH] for i in range(0, len(joined), CURSOR_LENGTH))
        return cls(values["q"], values["k"] or "auto", values["c"], cursors)


def _search_scope(domain_name: str, user: str) -> str:
    """The scope a search's tokens are sealed to. The domain: a token of one domain's search
    opens no other's. The user who searched (their username): an address copied from one
    agent's browser, history or a proxy's log opens nothing for another, who gets what an
    address too old gets (INVALID_SEARCH), and no page says what was searched. The user, not
    the session: a session ends after an hour idle, and signing in again must bring the agent
    back to the search they were on (web.UI.sign_in_url); the user is who must not share it
    (neither names nor usernames have a NUL, so the parts cannot run into one another)."""
    return f"{SEARCH_SCOPE}\x00{domain_name}\x00{user}"


def seal_search(ui: UI, domain_name: str, wanted: SearchRequest, *, user: str) -> str:
    """The search sealed for `user` (the username of the session searching) in tokens joined by
    SEARCH_PARTS (one for most searches). Its parts share a random id: parts of two searches do
    not make a third."""
    plain = json.dumps(wanted.state(), ensure_ascii=False, separators=(",", ":")).encode()
    parts = [plain[i : i + SEALED_PART_BYTES] for i in range(0, len(plain), SEALED_PART_BYTES)]
    together = secrets.token_hex(8)
    return SEARCH_PARTS.join(
        ui.services.tokens.encode(
            _search_scope(domain_name, user),
            {"d": base64.b64encode(part).decode(), "i": i, "n": len(parts), "r": together},
        )
        for i, part in enumerate(parts)
    )


def open_search(ui: UI, domain_name: str, sealed: str, *, user: str) -> SearchRequest:
    """The search a seal_search value carries for `user`; BadRequest (INVALID_SEARCH) when it
    was changed, is another domain's or another user's (or not a search's), is missing a part
    or has another search's, or is older than the codec accepts. Addresses sealed before
    searches were bound to their user (in one token, or in parts) are no longer accepted: as an
    address too old, once, the day after the upgrade at most."""
    tokens = sealed.split(SEARCH_PARTS)
    try:
        parts = [ui.services.tokens.decode(_search_scope(domain_name, user), t) for t in tokens]
        expected = {"i": 0, "n": len(parts), "r": parts[0].get("r")}
        plain = b""
        for index, part in enumerate(parts):
            if {k: part.get(k) for k in expected} != {**expected, "i": index}:
                raise BadRequest(INVALID_SEARCH)
            plain += base64.b64decode(part["d"], validate=True)
        state = json.loads(plain)
    except (BadRequest, KeyError, TypeError, ValueError):
        raise BadRequest(INVALID_SEARCH) from None
    if not isinstance(state, dict):
        raise BadRequest(INVALID_SEARCH)
    return SearchRequest.from_state(state)


def search_url(
    ui: UI,
    domain_name: str,
    wanted: SearchRequest | None = None,
    contact_id: str | None = None,
    *,
    user: str,
) -> str:
    """The search page of the domain, with `wanted`'s results (sealed for `user`: seal_search)
    when given."""
    url = f"/agent/domains/{quote(domain_name, safe='')}"
    url += "?s=" + seal_search(ui, domain_name, wanted, user=user) if wanted else ""
    return with_contact(url, contact_id)


def new_profile_url(
    ui: UI, domain_name: str, wanted: SearchRequest, contact_id: str | None = None, *, user: str
) -> str:
    """The creation form, filled in with what was searched for (sealed for `user`)."""
    return with_contact(
        f"/agent/domains/{quote(domain_name, safe='')}/profiles/new"
        f"?s={seal_search(ui, domain_name, wanted.first_page(), user=user)}",
        contact_id,
    )


def searcher(request: Request) -> str:
    """Who the searches of a signed-in page are sealed for (_search_scope): its user."""
    session: WebSession = request.state.session
    return session.username


def profile_url(domain_name: str, profile_id: str) -> str:
    return f"/agent/domains/{quote(domain_name, safe='')}/profiles/{profile_id}"


def checked_contact_id(value: str) -> str:
    """`value` as a contact id; BadRequest when it cannot be one: AddProfileKey's values have 1
    to 255 characters (the model), and the id is shown and carried in addresses. Spaces around
    it are dropped, as the forms drop them (form_text): one id, however it arrives."""
    value = value.strip()
    if not value or len(value) > MAX_SEARCH_TEXT or not value.isprintable():
        raise BadRequest(INVALID_CONTACT)
    return value


def carried_contact(request: Request) -> str | None:
    """The contact the page is carried for (`?contact=`), or None; BadRequest when not valid."""
    value = request.query_params.get(CONTACT_PARAM)
    return checked_contact_id(value) if value else None


def contact_query(contact_id: str | None) -> str:
    """The query parameter that carries the contact being linked; "" for none."""
    return f"{CONTACT_PARAM}={quote(contact_id, safe='')}" if contact_id else ""


def with_contact(url: str, contact_id: str | None) -> str:
    """`url` carrying the contact being linked, if any."""
    if not contact_id:
        return url
    return f"{url}{'&' if '?' in url else '?'}{contact_query(contact_id)}"


def contact_url(contact_id: str) -> str:
    """The screen-pop address of a contact (its id may hold "/", "?" or "%")."""
    return f"/agent/contacts/{quote(contact_id, safe='')}"


def search_by_key(
    tx: Tx,
    *,
    domain_name: str,
    key_name: str,
    text: str,
    after: str | None = None,
    limit: int = SEARCH_PAGE,
) -> tuple[list[tuple[ProfileRecord, list[KeyMatch]]], str | None]:
    """SearchProfiles by one key and value, as the agent's search runs it (a profile id is
    found whatever its case, as the API's ids are lower-case hex); the service normalises the
    value as the key's content type says."""
    value = text.lower() if key_name == "_profileId" else text
    return profiles.search_profiles(
        tx,
        domain_name=domain_name,
        criteria=[profiles.SearchCriterion(key_name, (value,))],
        limit=limit,
        after=after,
    )


def searched_as(key_name: str, text: str) -> SearchRequest:
    """The agent search that searches `key_name` for `text`: a predefined key chosen from the
    list, any other as "Another key…"."""
    if key_name in PREDEFINED_KEYS:
        return SearchRequest(text, key_name)
    return SearchRequest(text, "custom", key_name)


def linked_profiles(
    tx: Tx, *, domain_name: str, contact_id: str, limit: int = SEARCH_PAGE
) -> list[ProfileRecord]:
    """The profiles of the domain linked to the contact (its `_ctrContactId` key)."""
    page, _ = profiles.search_profiles(
        tx,
        domain_name=domain_name,
        criteria=[profiles.SearchCriterion(CONTACT_KEY, (contact_id,))],
        limit=limit,
    )
    return [rec for rec, _ in page]


def lock_contact(tx: Tx, *, domain_name: str, contact_id: str) -> None:
    """Take the contact's lock (contacts.links.lock_contacts), as the AddProfileKey and
    DeleteProfileKey of its `_ctrContactId` take it before the profile's (store.advisory's
    order), with the digest they take it by; held to the commit (a no-op on SQLite, whose one
    writer serialises already). Taken before the contact's links are read, the read and the
    changes made from it are one step: without it, the second of two moves of the contact at
    once read the link the first was taking off, and its DeleteProfileKey found nothing
    (NotFound, an error page), or the second of two links to different profiles found no other
    and linked the contact to both."""
    content_type = profiles.key_content_type(tx, domain_name=domain_name, key_name=CONTACT_KEY)
    normal = normalize(content_type, contact_id, phone_region=tx.settings.default_phone_region)
    if normal:  # else AddProfileKey refuses the value, having locked nothing
        digest = tx.cipher(domain_name).digest(CONTACT_KEY, normal)
        lock_linked_contacts(tx, domain_name, CONTACT_KEY, [digest])


def _records_scope(kind: str, domain_name: str, profile_id: str, object_type: str) -> str:
    # A token opens only what it was made for: this domain's profile and record type.
    return "\x00".join((kind, domain_name, profile_id, object_type))


def object_url(ui: UI, domain_name: str, profile_id: str, object_type: str, unique_key: str) -> str:
    """The page of one record of the profile, its unique key's digest (hex) sealed."""
    token = ui.services.tokens.encode(
        _records_scope(OBJECT_SCOPE, domain_name, profile_id, object_type), {"k": unique_key}
    )
    return f"{profile_url(domain_name, profile_id)}/objects/{quote(object_type, safe='')}/{token}"


def open_object_link(
    ui: UI, domain_name: str, profile_id: str, object_type: str, token: str
) -> bytes:
    """The unique key's digest an object_url carries; BadRequest when it was changed, is for
    another profile or type, or is older than the codec accepts."""
    try:
        state = ui.services.tokens.decode(
            _records_scope(OBJECT_SCOPE, domain_name, profile_id, object_type), token
        )
        return bytes.fromhex(state["k"])
    except (BadRequest, KeyError, TypeError, ValueError):
        raise BadRequest(INVALID_OBJECT_LINK) from None


def older_records_url(
    ui: UI, domain_name: str, profile_id: str, object_type: str, after: dict[str, Any]
) -> str:
    """The profile page's next page of records of the type, its cursor (history.ObjectsView's
    next_after: it names a record by its key digest) sealed."""
    token = ui.services.tokens.encode(
        _records_scope(HISTORY_SCOPE, domain_name, profile_id, object_type), after
    )
    return f"?type={quote(object_type, safe='')}&after={token}"


def open_records_cursor(
    ui: UI, domain_name: str, profile_id: str, object_type: str | None, token: str | None
) -> dict[str, Any] | None:
    """Where the page of records an older_records_url asks for starts (history.load reads it);
    None (the first page) for no cursor, or one that is not valid (changed, another type's,
    too old)."""
    if not token or object_type is None:
        return None
    try:
        return ui.services.tokens.decode(
            _records_scope(HISTORY_SCOPE, domain_name, profile_id, object_type), token
        )
    except BadRequest:
        return None


def display_name(record: ProfileRecord) -> str:
    return name_of(record.fields)


# What tells a profile apart from a namesake on a screen pop's cards: what the search results'
# columns show (agent/search.html), the first of each group the profile has.
CARD_DETAILS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Phone", ("PhoneNumber", "MobilePhoneNumber", "HomePhoneNumber", "BusinessPhoneNumber")),
    ("Email", ("EmailAddress", "PersonalEmailAddress", "BusinessEmailAddress")),
    ("Account", ("AccountNumber",)),
)


def card_details(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of what a profile's card shows besides its name (CARD_DETAILS)."""
    shown: list[tuple[str, str]] = []
    for label, names in CARD_DETAILS:
        value = next((fields[n] for n in names if isinstance(fields.get(n), str) and fields[n]), "")
        if value:
            shown.append((label, value))
    return shown


def name_of(fields: dict[str, Any]) -> str:
    """The name a profile with `fields` (or a profile form's values) is shown by."""
    name = " ".join(fields[n] for n in NAME_FIELDS if fields.get(n))
    return name or fields.get("BusinessName") or "(no name)"


@dataclass(frozen=True)
class PopSearch:
    """A screen pop's search of a domain by the contact's `profileSearchKey` and
    `profileSearchValue` attributes (contacts.records.screen_pop_search), or (`shared`) by the
    caller's phone number or email address that several profiles share, which is why the
    start event linked the contact to none (contacts.shared_endpoint); `more`: more profiles
    match than the screen pop shows."""

    domain_name: str
    key_name: str
    text: str
    more: bool
    shared: bool = False

    @property
    def endpoint(self) -> str:
        """What a `shared` search searched by, in words (never its value)."""
        return "email address" if self.key_name == "_email" else "phone number"

    def request(self) -> SearchRequest:
        return searched_as(self.key_name, self.text)

    def prefill(self, ui: UI, contact_id: str, *, user: str) -> dict[str, str]:
        """The search box and the creation link of a search that found no profile, filled in
        with what was searched for (the link's sealed for `user`)."""
        wanted = self.request()
        return {
            "domain": self.domain_name,
            "key_name": self.key_name,
            "q": wanted.text,
            "key": wanted.key,
            "custom_key": wanted.custom_key,
            "new_url": new_profile_url(ui, self.domain_name, wanted, contact_id, user=user),
        }


def contact_seen(tx: Tx, domain_name: str, contact_id: str) -> bool:
    """Whether the domain has applied a start event or a record of the contact (its delivery
    row, contacts.routing), linked to a profile or not."""
    digest = contact_digest(tx, domain_name, contact_id)
    return digest in applied_states(tx, domain_name, [digest])


def no_such_domain(domain_name: str) -> NotFound:
    """What a domain that does not exist answers (domains.service.get_domain's NotFound, which
    the pages show as their 404): the answer of a domain outside the agent's scope too."""
    return NotFound(f"The domain {domain_name} does not exist.")


def refuse_out_of_scope(request: Request, domain_name: str) -> None:
    """`no_such_domain` when the signed-in user may not see `domain_name` (its scope)."""
    session: WebSession = request.state.session
    if not session.allows(domain_name):
        raise no_such_domain(domain_name)


def in_scope(endpoint: Endpoint) -> Endpoint:
    """`endpoint` (an agent page, wrapped in UI.page) refused as for a domain that does not
    exist when its address names one outside the user's scope: first, before the form, a token
    or a profile id of the address is looked at, so that an error of those says nothing of
    whether the domain exists either."""

    async def checked(request: Request) -> Response:
        named = request.path_params.get("domain")
        if isinstance(named, str):
            refuse_out_of_scope(request, named)
        return await endpoint(request)

    checked.__name__ = endpoint.__name__
    return checked


def routes(ui: UI) -> list[Route]:
    region = ui.services.settings.default_phone_region

    async def domain_names(request: Request) -> list[str]:
        """The domains the signed-in user may see (its scope's that exist; every one without).
        The scope is part of the query: filtered after a first page, a scoped agent's domains
        after it in name order were never offered."""
        session: WebSession = request.state.session
        return await ui.read(lambda tx: all_domain_names(tx, only=session.domains))

    async def require_domain(name: str) -> None:
        await ui.read(lambda tx: domains.get_domain(tx, domain_name=name))

    @ui.page("agent")
    async def agent_home(request: Request) -> Response:
        names = await domain_names(request)
        if len(names) == 1:
            return RedirectResponse(f"/agent/domains/{quote(names[0], safe='')}", 303)
        scoped = request.state.session.domains is not None
        return ui.render(request, "agent/home.html", domains=names, scoped=scoped)

    def render_search(
        request: Request,
        name: str,
        wanted: SearchRequest,
        *,
        error: str = "",
        results: list[tuple[ProfileRecord, list[KeyMatch]]] | None = None,
        used_key: str = "",
        cursor: str | None = None,
        contact_id: str | None = None,
    ) -> Response:
        searched = bool(wanted.text) and not error
        first = wanted.first_page()
        user = searcher(request)
        paged = searched and wanted.page > 1
        more = searched and cursor is not None and wanted.page < MAX_SEARCH_PAGES
        # Each result shows its phone, email and account number: the audit line names them.
        show_profiles(request, [rec.profile_id for rec, _ in results or []])
        return ui.render(
            request,
            "agent/search.html",
            status=400 if error else 200,
            domain_name=name,
            q=wanted.text,
            key=wanted.key,
            custom_key=wanted.custom_key,
            keys=pf.PREDEFINED_SEARCH_KEYS,
            searched=searched,
            error=error,
            used_key=used_key,
            results=[(rec, matches, display_name(rec)) for rec, matches in results or []],
            page=wanted.page,
            # The results before this page's (the page-number heading counts from there).
            offset=(wanted.page - 1) * SEARCH_PAGE,
            capped=searched and cursor is not None and not more,
            first_url=search_url(ui, name, first, contact_id, user=user) if paged else "",
            previous_url=(
                search_url(ui, name, wanted.previous_page(), contact_id, user=user) if paged else ""
            ),
            next_url=(
                search_url(ui, name, wanted.next_page(cursor), contact_id, user=user)
                if more and cursor
                else ""
            ),
            new_url=new_profile_url(ui, name, first, contact_id, user=user) if searched else "",
            # Searching for the caller of a live contact: every way on (a result, a page, a
            # new profile) keeps the contact, for the profile page to link it.
            contact_id=contact_id,
            contact_query=contact_query(contact_id),
            contact_page=contact_url(contact_id) if contact_id else "",
        )

    def submit(
        request: Request,
        name: str,
        wanted: SearchRequest,
        contact_id: str | None,
        *,
        typed: bool = True,
    ) -> Response:
        """A search as typed: its results are at an address that carries it sealed. Nothing
        typed is refused with EMPTY_SEARCH; an old address's empty `?q=` (`typed` False) is
        only the empty search page."""
        user = searcher(request)
        if not wanted.text and typed:
            return render_search(request, name, wanted, error=EMPTY_SEARCH, contact_id=contact_id)
        if not wanted.text:
            return RedirectResponse(search_url(ui, name, None, contact_id, user=user), 303)
        if error := wanted.problem():
            return render_search(request, name, wanted, error=error, contact_id=contact_id)
        return RedirectResponse(search_url(ui, name, wanted, contact_id, user=user), 303)

    def legacy_search(params: QueryParams) -> SearchRequest:
        """The search an address from before searches were sealed (`?q=`) carries."""
        return SearchRequest(
            (params.get("q") or "").strip(),
            (params.get("key") or "auto").strip(),
            (params.get("custom_key") or "").strip(),
        )

    def legacy_search_return(path: str, query: str, user: str) -> str | None:
        """Where sign-in leads from an old search address (`?q=`) visited signed out: its
        search sealed for `user` (web.UI.seal_on_return), as `search` sends it on once signed
        in. Sign-in used to lead back to the address with the value in clear, one request more
        whose line logged it. None for any other page's address."""
        matched = re.fullmatch(r"/agent/domains/([^/]+)", path)
        params = QueryParams(query)
        if matched is None or "q" not in params:
            return None
        contact = params.get(CONTACT_PARAM)
        try:
            contact_id = checked_contact_id(contact) if contact else None
        except BadRequest:
            contact_id = None  # the search without it, as its page would refuse it
        wanted = legacy_search(params)
        name = unquote(matched.group(1))
        return search_url(ui, name, wanted if wanted.text else None, contact_id, user=user)

    ui.seal_on_return(legacy_search_return)

    @ui.page("agent", shows_personal_data=True)
    @in_scope
    async def search(request: Request) -> Response:
        name = request.path_params["domain"]
        await require_domain(name)
        if request.method == "POST":
            form = request.state.form
            contact = form_text(form, CONTACT_PARAM)
            return submit(
                request,
                name,
                SearchRequest(
                    form_text(form, "q"),
                    form_text(form, "key") or "auto",
                    form_text(form, "custom_key"),
                ),
                checked_contact_id(contact) if contact else None,
            )
        params = request.query_params
        contact_id = carried_contact(request)
        if "q" in params:
            # An address from before searches were sealed (no page makes one now). Sent on
            # (303) to the sealed address of its search, for this user (submit), not refused:
            # whoever follows an old bookmark or a link another application builds expects
            # the results, and refusing would not take the value out of this request's log
            # line, which it is already in. Sent on, it is in this one request only, not in
            # the address the results are at (nor their pages, links or the history's entry).
            # Signed out, sign-in leads straight to the sealed one (legacy_search_return).
            return submit(request, name, legacy_search(params), contact_id, typed=False)
        if "s" not in params:
            return render_search(request, name, SearchRequest(), contact_id=contact_id)
        try:
            wanted = open_search(ui, name, params["s"], user=searcher(request))
        except BadRequest as exc:
            return render_search(
                request, name, SearchRequest(), error=exc.message, contact_id=contact_id
            )
        results: list[tuple[ProfileRecord, list[KeyMatch]]] = []
        cursor: str | None = None
        tried: list[str] = []
        error = wanted.problem()
        for key_name in [] if error else wanted.keys():

            def run(tx: Tx, key_name: str = key_name) -> Any:
                return search_by_key(
                    tx, domain_name=name, key_name=key_name, text=wanted.text, after=wanted.after
                )

            results, cursor = await ui.read(run)
            tried.append(key_name)
            if results:
                break
        # Found: by the key that found them. Not found: by every key tried ("Ada" by full name
        # and then account number), not only the last.
        used_key = tried[-1] if results else " or ".join(tried)
        return render_search(
            request,
            name,
            wanted,
            error=error,
            results=results,
            used_key=used_key,
            cursor=cursor,
            contact_id=contact_id,
        )

    @ui.page("agent", shows_personal_data=True)
    @in_scope
    async def profile_page(request: Request) -> Response:
        name = request.path_params["domain"]
        profile_id = request.path_params["profile_id"]
        after = request.query_params.get("after") or None
        object_type = request.query_params.get("type") or None
        contact_id = carried_contact(request)

        cursor = open_records_cursor(ui, name, profile_id, object_type, after)

        def load(tx: Tx) -> dict[str, Any]:
            record = profiles.get_profile(tx, domain_name=name, profile_id=profile_id)
            return {
                "record": record,
                "linked": (
                    linked_profiles(tx, domain_name=name, contact_id=contact_id)
                    if contact_id
                    else []
                ),
                "keys": profiles.profile_keys(tx, domain_name=name, profile_id=record.profile_id),
                "objects": history.load(
                    tx,
                    domain_name=name,
                    profile_id=record.profile_id,
                    object_type=object_type,
                    after=cursor,
                ),
            }

        loaded = await ui.read(load)
        record = loaded["record"]
        if record.profile_id != profile_id:
            # A merged-away id: show the surviving profile under its own address.
            return RedirectResponse(
                with_contact(profile_url(name, record.profile_id), contact_id), status_code=303
            )
        fields = record.fields
        shown: history.ObjectsView = loaded["objects"]
        shown_type = shown.object_type or ""
        linked: list[ProfileRecord] = loaded["linked"]
        linked_here = any(rec.profile_id == profile_id for rec in linked)
        # What the change this page was redirected from did (ui.flash); never from the address.
        done = flash.take(ui, request, page=profile_url(name, profile_id))
        # With a contact carried, the names of the other profiles linked to it too.
        show_profiles(request, [profile_id, *(rec.profile_id for rec in linked)])
        page = ui.render(
            request,
            "agent/profile.html",
            domain_name=name,
            record=record,
            name=display_name(record),
            updated=history.shown_time(record.updated_at),
            contact_id=contact_id,
            # Links within the page (its record tabs and pages) keep the contact.
            contact_query=contact_query(contact_id),
            linked_here=linked_here,
            just_linked=linked_here and flash.LINKED in done,
            linked_elsewhere=[
                (with_contact(profile_url(name, rec.profile_id), contact_id), display_name(rec))
                for rec in linked
                if rec.profile_id != profile_id
            ],
            contact_search=(
                search_url(ui, name, None, contact_id, user=searcher(request)) if contact_id else ""
            ),
            contact_page=contact_url(contact_id) if contact_id else "",
            sections=pf.profile_view(fields),
            addresses=[
                (a, lines)
                for a in ADDRESS_FIELDS
                if isinstance(fields.get(a), dict) and (lines := pf.address_lines(fields[a]))
            ],
            attributes=sorted((fields.get("Attributes") or {}).items()),
            # A profile linked to many contacts has a _ctrContactId value per contact: show a few.
            keys=[
                (k, sorted(vs)[:KEY_VALUES_SHOWN], max(0, len(vs) - KEY_VALUES_SHOWN))
                for k, vs in sorted(loaded["keys"].items())
            ],
            objects=shown,
            object_links=[
                object_url(ui, name, record.profile_id, shown_type, row.unique_key)
                for row in shown.rows
            ],
            older_url=(
                older_records_url(ui, name, record.profile_id, shown_type, shown.next_after)
                if shown.next_after
                else ""
            ),
            saved=flash.SAVED in done,
            paged=after is not None,
        )
        if done:
            flash.clear(ui, request, page)
        return page

    def confirmed(
        request: Request,
        domain_name: str,
        profile_id: str,
        contact_id: str | None,
        *,
        done: list[str],
    ) -> Response:
        """The redirect from a change to the profile's page (with the contact being linked, if
        any), which confirms `done` once (ui.flash)."""
        page = profile_url(domain_name, profile_id)
        response = RedirectResponse(with_contact(page, contact_id), 303)
        flash.confirm(ui, request, response, page=page, done=done)
        return response

    def link_here(
        tx: Tx, *, domain_name: str, profile_id: str, contact_id: str, move: bool
    ) -> bool:
        """Link the contact to the profile (AddProfileKey(_ctrContactId, [contact id]), as the
        contact centre's flow does, spec §3.2); whether it was linked.

        AWS's AddProfileKey adds a value without looking at other profiles, so one contact id
        can be on several. But the contact's record, which arrives when the contact ends, is
        put on the profile its `_ctrContactId` finds, and a key that finds more than one profile
        is discarded as ambiguous (spec §1.6): linked to two profiles, the contact's record
        would go to neither. So when another profile of the domain already has the contact,
        nothing is linked unless the agent chose to `move` the link, which takes the contact
        off the others (DeleteProfileKey) in the same transaction. Records of the contact
        already stored stay where they are: moving those is what a merge does.

        The contact's lock is taken before its links are read (`lock_contact`), so that two
        agents linking or moving it at once (two server processes on PostgreSQL) go one after
        the other, the second reading what the first committed."""
        lock_contact(tx, domain_name=domain_name, contact_id=contact_id)
        others = [
            rec.profile_id
            for rec in linked_profiles(tx, domain_name=domain_name, contact_id=contact_id)
            if rec.profile_id != profile_id
        ]
        if others and not move:
            return False
        for other in others:
            profiles.delete_profile_key(
                tx,
                domain_name=domain_name,
                profile_id=other,
                key_name=CONTACT_KEY,
                values=[contact_id],
            )
        profiles.add_profile_key(
            tx,
            domain_name=domain_name,
            profile_id=profile_id,
            key_name=CONTACT_KEY,
            values=[contact_id],
        )
        return True

    @ui.page("agent")
    @in_scope
    async def link_contact(request: Request) -> Response:
        """The profile page's "Link contact ... to this profile" (and "... instead") button."""
        name = request.path_params["domain"]
        profile_id = request.path_params["profile_id"]
        form = request.state.form
        contact_id = checked_contact_id(form_text(form, CONTACT_PARAM))
        move = form_text(form, "move") == "1"

        def link(tx: Tx) -> tuple[str, bool]:
            live_id = profiles.get_profile(tx, domain_name=name, profile_id=profile_id).profile_id
            return live_id, link_here(
                tx, domain_name=name, profile_id=live_id, contact_id=contact_id, move=move
            )

        live_id, linked = await ui.write(link)
        # Not linked: another profile got the contact since the page was shown; the profile
        # page shows which, and the choice.
        return confirmed(request, name, live_id, contact_id, done=[flash.LINKED] if linked else [])

    @ui.page("agent", shows_personal_data=True)
    @in_scope
    async def object_page(request: Request) -> Response:
        name = request.path_params["domain"]
        profile_id = request.path_params["profile_id"]
        object_type = request.path_params["object_type"]
        digest = open_object_link(
            ui, name, profile_id, object_type, request.path_params["object_link"]
        )

        def load(tx: Tx) -> tuple[ProfileRecord, history.ObjectDetail | None]:
            record = profiles.get_profile(tx, domain_name=name, profile_id=profile_id)
            detail = history.load_one(
                tx,
                domain_name=name,
                profile_id=record.profile_id,
                object_type=object_type,
                digest=digest,
            )
            return record, detail

        record, detail = await ui.read(load)
        if detail is None:
            raise NotFound(f"The profile has no such {object_type} record; it may have expired.")
        show_profiles(request, [record.profile_id])
        return ui.render(
            request,
            "agent/object.html",
            domain_name=name,
            record=record,
            name=display_name(record),
            object_type=object_type,
            text=detail.text,
            # A contact's record: its details labelled, the JSON folded under them.
            contact=detail.contact,
        )

    def render_form(
        request: Request,
        *,
        domain_name: str,
        values: dict[str, str],
        errors: dict[str, str],
        record: ProfileRecord | None = None,
        shown: dict[str, str] | None = None,
        submission: str | None = None,
        now_saved: dict[str, pf.NowSaved] | None = None,
        notice: str = "",
        problem: str = "",
        status: int | None = None,
        profile_id: str | None = None,
    ) -> Response:
        """The create form, or the edit form of `record` (of `profile_id` when the profile
        could not be read: unsaved_form)."""
        if record is not None:
            show_profiles(request, [record.profile_id])
        return ui.render(
            request,
            "agent/profile_form.html",
            status=status or (400 if errors else 200),
            domain_name=domain_name,
            profile_id=record.profile_id if record else profile_id,
            values=values,
            shown=shown or {},
            shown_prefix=pf.SHOWN_PREFIX,
            errors=errors,
            now_saved=now_saved or {},
            # The ids a field's aria-describedby adds for its "Now saved" line, if it has one.
            now_ids=lambda field: [f"{field}-now"] if now_saved and field in now_saved else [],
            notice=notice,
            problem=problem,
            labels=pf.form_labels(),
            name=display_name(record) if record else name_of(shown or values),
            sections=pf.SECTIONS,
            address_parts=pf.ADDRESS_FORM_PARTS,
            attributes_hint=pf.ATTRIBUTES_HINT,
            submission=submission,
        )

    async def posted_form(request: Request) -> tuple[FormData, bool]:
        """The profile form posted, or the one it brings back after sign-in (a form sent after
        its session ended: web.UI.keep_form), and whether it brings one back (once only: a
        write, submissions.reopened_form)."""
        form: FormData = request.state.form
        kept = form_text(form, submissions.KEPT_FORM_FIELD)
        if not kept:
            return form, False
        return await ui.write(lambda tx: submissions.reopened_form(tx, request, kept)), True

    def incomplete_form(request: Request, missing: list[str]) -> Response:
        """The answer (400) to an edit form without some of its fields (pf.missing_fields),
        refused whole: a field left out read as empty, and saving cleared it."""
        return ui.error_page(request, 400, "That did not work", pf.incomplete_form_message(missing))

    async def unsaved_form(
        request: Request, error: ServiceError, *, domain_name: str, profile_id: str | None = None
    ) -> Response:
        """The profile form posted (or kept across sign-in: posted_form) while the domain's key
        could not be used (`error`, unreadable_domain: a KMS that does not answer, a key
        disabled), given back as it was sent, with what the agent typed, its one-time token
        (create) and the values it showed (edit), and why nothing was saved, so that the agent
        sends it again once the key works. It used to be the page that says the data cannot be
        read, and what was typed was lost. The profile is not read (it cannot be): the edit
        form's values as shown stay those it was sent with, and the save that follows checks
        them against the profile then."""
        if not unreadable_domain(error):
            raise error
        status, reason = ui.unreadable_reason(request, request.state.session, error)
        form, kept = await posted_form(request)
        if profile_id is not None and (missing := pf.missing_fields(form)):
            return incomplete_form(request, missing)
        token = submissions.usable(form_text(form, SUBMISSION_FIELD))
        return render_form(
            request,
            domain_name=domain_name,
            values=pf.values_from_form(form) or pf.values_from_profile({}),
            errors={},
            shown=pf.values_from_form(form, pf.SHOWN_PREFIX) if profile_id else None,
            # The create form's token as sent: sent again, it still creates one profile.
            submission=None if profile_id else token or submissions.new_token(),
            notice=submissions.KEPT_FORM_NOTICE if kept else "",
            problem=NOT_SAVED.format(reason=reason),
            status=status,
            profile_id=profile_id,
        )

    # A form sent after the session ended comes back after sign-in (web.UI.keep_form).
    @ui.page("agent", keep_form=True)
    @in_scope
    async def create_profile(request: Request) -> Response:
        name = request.path_params["domain"]
        await require_domain(name)
        # Created for a live contact (from its page, or a search for its caller): the new
        # profile is linked to it. The form is posted to its own address (it names no other),
        # so the contact comes back with it.
        contact_id = carried_contact(request)
        if request.method == "GET":
            values = pf.values_from_profile({})
            # Coming from a search with no result: start with what was searched for.
            token = request.query_params.get("s")
            prefill = (
                open_search(ui, name, token, user=searcher(request)).text
                if token is not None
                else ""
            )
            keys = pf.search_keys_for(prefill) if prefill else []
            if keys and keys[0] == "_phone":
                values["PhoneNumber"] = prefill
            elif keys and keys[0] == "_email":
                values["EmailAddress"] = prefill
            return render_form(
                request,
                domain_name=name,
                values=values,
                errors={},
                submission=submissions.new_token(),
            )
        form, kept = await posted_form(request)
        token = submissions.usable(form_text(form, SUBMISSION_FIELD))
        values = pf.values_from_form(form) or pf.values_from_profile({})
        if kept:
            # Back after sign-in with what was typed before the session ended: shown to
            # review, not saved; its one-time token still guards against a second profile.
            return render_form(
                request,
                domain_name=name,
                values=values,
                errors={},
                submission=token or submissions.new_token(),
                notice=submissions.KEPT_FORM_NOTICE,
            )
        errors = pf.validate(values, region)
        if not errors and not pf.creation_fields(values):
            errors[pf.EMPTY_FIELD] = pf.EMPTY_PROFILE
        if errors:
            return render_form(
                request,
                domain_name=name,
                values=values,
                errors=errors,
                submission=token or submissions.new_token(),
            )
        fields = pf.creation_fields(values)

        def create(tx: Tx) -> tuple[str, bool, bool]:
            # The same form sent again shows the profile it created (ui.submissions).
            if token is not None:
                earlier = submissions.created_by(tx, domain_name=name, token=token)
                live = earlier and profiles.resolve_profile_id(
                    tx, domain_name=name, profile_id=earlier
                )
                if live:
                    return live, False, False
                if earlier is not None:
                    # Its profile was deleted since: the form makes a profile again.
                    submissions.forget(tx, domain_name=name, token=token)
            created = profiles.create_profile(tx, domain_name=name, fields=fields)
            if token is not None:
                submissions.record(tx, domain_name=name, token=token, profile_id=created.profile_id)
            # A contact another profile has meanwhile is not moved: the new profile's page
            # shows which has it, and the agent chooses (link_here).
            linked = contact_id is not None and link_here(
                tx,
                domain_name=name,
                profile_id=created.profile_id,
                contact_id=contact_id,
                move=False,
            )
            return created.profile_id, True, linked

        try:
            profile_id, created, linked = await ui.write(create)
        except ServiceError as exc:
            return await unsaved_form(request, exc, domain_name=name)
        done = [flash.SAVED] if created else []
        return confirmed(
            request, name, profile_id, contact_id, done=done + ([flash.LINKED] if linked else [])
        )

    @ui.page("agent", keep_form=True, shows_personal_data=True)
    @in_scope
    async def edit_profile(request: Request) -> Response:
        name = request.path_params["domain"]
        profile_id = request.path_params["profile_id"]
        try:
            record = await ui.read(
                lambda tx: profiles.get_profile(tx, domain_name=name, profile_id=profile_id)
            )
        except ServiceError as exc:
            if request.method == "GET":
                raise
            return await unsaved_form(request, exc, domain_name=name, profile_id=profile_id)
        if request.method == "GET":
            values = pf.values_from_profile(record.fields)
            return render_form(
                request, domain_name=name, values=values, errors={}, record=record, shown=values
            )
        form, kept = await posted_form(request)
        if missing := pf.missing_fields(form):
            return incomplete_form(request, missing)
        values = pf.values_from_form(form) or pf.values_from_profile({})
        # A form without the values it showed (sent by a script): compared with the profile.
        shown = pf.values_from_form(form, pf.SHOWN_PREFIX) or pf.values_from_profile(record.fields)
        if kept:
            # Back after sign-in with what was typed before the session ended: shown to review,
            # not saved. The fields the agent changed keep their values as shown as the
            # baseline: the save that follows still refuses what someone else changed
            # meanwhile. The others show what is saved now (pf.refreshed).
            values, shown = pf.refreshed(record.fields, shown, values)
            return render_form(
                request,
                domain_name=name,
                values=values,
                errors={},
                record=record,
                shown=shown,
                notice=submissions.KEPT_FORM_NOTICE,
            )
        changed = pf.changed_fields(shown, values)
        errors = pf.validate(values, region, only=changed)
        live_id = record.profile_id
        if errors:
            # Shown with any field changed meanwhile, so the agent sees everything at once.
            errors = {**pf.update_changes(record.fields, shown, values)[1], **errors}
        elif changed:
            try:
                record, errors = await ui.write(
                    lambda tx: pf.save_edit(
                        tx, domain_name=name, profile_id=live_id, shown=shown, values=values
                    )
                )
            except ServiceError as exc:
                return await unsaved_form(request, exc, domain_name=name, profile_id=live_id)
        if errors:
            # The typed values stay; each field changed meanwhile shows what is saved now, and
            # saving again replaces it knowingly (pf.refused_edit); the fields the agent did not
            # change show what is saved now (pf.refreshed).
            values, shown = pf.refreshed(record.fields, shown, values)
            baseline, now_saved = pf.refused_edit(record.fields, shown, values)
            return render_form(
                request,
                domain_name=name,
                values=values,
                errors=errors,
                record=record,
                shown=baseline,
                now_saved=now_saved,
            )
        # Edited while linking a live contact: back to the profile with the contact.
        return confirmed(
            request, name, record.profile_id, carried_contact(request), done=[flash.SAVED]
        )

    @ui.page("agent", shows_personal_data=True)
    async def contact_pop(request: Request) -> Response:
        contact_id = checked_contact_id(request.path_params["contact_id"])
        wanted = request.query_params.get("domain")
        if wanted:
            # A mistyped domain in the contact centre's screen-pop address is a 404 saying
            # so, not a search box for a domain that does not exist; one outside the agent's
            # scope answers the same.
            refuse_out_of_scope(request, wanted)
            await require_domain(wanted)
        names = [wanted] if wanted else await domain_names(request)

        def find(
            tx: Tx,
        ) -> tuple[list[tuple[str, ProfileRecord]], list[str], list[PopSearch], bool]:
            found: list[tuple[str, ProfileRecord]] = []
            unreadable: list[str] = []
            searches: list[PopSearch] = []
            # Whether any domain searched has applied an event or a record of the contact.
            known = False
            for domain_name in names:
                try:
                    # The contact's attributes may name what to search for instead of the
                    # profile the contact was linked to by its phone number or email.
                    asked = contact_screen_pop_search(
                        tx, domain_name=domain_name, contact_id=contact_id
                    )
                    shared = False
                    if asked is None:
                        page = linked_profiles(
                            tx, domain_name=domain_name, contact_id=contact_id, limit=5
                        )
                        # Linked to none as several profiles share the caller's number or
                        # address: those are the candidates (a link since supersedes it).
                        if not page:
                            asked = shared_endpoint(
                                tx, domain_name=domain_name, contact_id=contact_id
                            )
                            shared = asked is not None
                    if asked is not None:
                        key_name, text = asked
                        hits, cursor = search_by_key(
                            tx, domain_name=domain_name, key_name=key_name, text=text
                        )
                        searches.append(
                            PopSearch(domain_name, key_name, text, cursor is not None, shared)
                        )
                        page = [rec for rec, _ in hits]
                    known = known or bool(page) or contact_seen(tx, domain_name, contact_id)
                except NotFound:
                    continue
                except ServiceError as exc:
                    # One domain whose key cannot be used (disabled, KMS unreachable) must not
                    # hide the contact in the others: it is skipped, and the page says so.
                    if not unreadable_domain(exc):
                        raise
                    unreadable.append(domain_name)
                    continue
                found.extend((domain_name, rec) for rec in page)
            return found, unreadable, searches, known or bool(searches)

        found, unreadable, searches, known = await ui.read(find)
        if len(found) == 1 and not any(s.more for s in searches):
            # The profile page carries the contact too: if it is not the caller's profile,
            # the agent searches from there and links the contact to the right one.
            domain_name, record = found[0]
            return RedirectResponse(
                with_contact(profile_url(domain_name, record.profile_id), contact_id), 303
            )
        show_profiles(request, [rec.profile_id for _, rec in found])
        return ui.render(
            request,
            "agent/contact.html",
            contact_id=contact_id,
            contact_query=contact_query(contact_id),
            # Namesakes ("Ada Lovelace" twice) told apart by their phone, email and account.
            matches=[(d, rec, display_name(rec), card_details(rec.fields)) for d, rec in found],
            domains=[d for d in names if d not in unreadable],
            unreadable=unreadable,
            # No domain searched has heard of the contact (a mistyped id, or one whose event
            # has not come): said so, naming nothing else. A domain not searched may have.
            unknown=not known and not unreadable,
            keys=pf.PREDEFINED_SEARCH_KEYS,
            # Searched as the contact's attributes asked: the key names (never the value) say
            # why these profiles; the whole search and the creation form open with the value
            # sealed in their addresses, and the search box (posted) shows it to change.
            search_keys=" or ".join(sorted({s.key_name for s in searches if not s.shared})),
            # The caller's number or address matched several profiles: the start event linked
            # the contact to none (contacts.shared_endpoint). What it was, never its value.
            shared_endpoints=" or ".join(sorted({s.endpoint for s in searches if s.shared})),
            more_urls=[
                (
                    s.domain_name,
                    search_url(ui, s.domain_name, s.request(), contact_id, user=searcher(request)),
                )
                for s in searches
                if s.more
            ],
            # Under the candidates too when the caller's endpoint is shared: a new customer
            # may call from a family's number.
            prefill=(
                searches[0].prefill(ui, contact_id, user=searcher(request))
                if len(searches) == 1 and (not found or searches[0].shared)
                else None
            ),
        )

    return [
        Route("/agent/", agent_home, methods=["GET"]),
        # :path, so that a contact id with "/" in it (sent as %2F, which the server decodes)
        # still opens its contact.
        Route("/agent/contacts/{contact_id:path}", contact_pop, methods=["GET"]),
        Route("/agent/domains/{domain}", search, methods=["GET", "POST"]),
        Route("/agent/domains/{domain}/profiles/new", create_profile, methods=["GET", "POST"]),
        Route(
            "/agent/domains/{domain}/profiles/{profile_id}/edit",
            edit_profile,
            methods=["GET", "POST"],
        ),
        Route("/agent/domains/{domain}/profiles/{profile_id}", profile_page, methods=["GET"]),
        Route(
            "/agent/domains/{domain}/profiles/{profile_id}/link-contact",
            link_contact,
            methods=["POST"],
        ),
        Route(
            "/agent/domains/{domain}/profiles/{profile_id}/objects/{object_type}/{object_link}",
            object_page,
            methods=["GET"],
        ),
    ]
