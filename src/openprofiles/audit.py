"""The audit log: one line for each state-changing request, saying who did what and how it ended.

Lines go to the logger `openprofiles.audit` at INFO, so a server prints them on stderr with
its other records (logging_setup); an operator can route that logger elsewhere. The server's
processes and the commands also append them to the audit log's file (OPENPROFILES_AUDIT_LOG,
default DATA_DIR/audit.log; logging_setup.AuditFileHandler): the one place every line of an
installation ends up, the commands' included. Four sources write them, each from the one place
its requests or commands pass through:

* the AWS API (wire.dispatch.make_asgi_app): the operation, the domain, the caller's access key
  id and the HTTP status (with the error's type when it failed), and the profile the request
  named or created. Read-only operations (`READ_ONLY_PREFIXES`) are not logged, nor is
  PutProfileObject (`FEED_OPERATIONS`): like the contact feeds, it is how applications stream
  records in (thousands a second), which the dead-letter queue and the domain's counts account
  for; a line for each would bury the changes people make. An operator who must answer which
  key read a customer's data turns on OPENPROFILES_AUDIT_API_READS (Settings.audit_api_reads,
  off by default: applications read thousands of times a second): the reads that answer
  customers' personal data (`PERSONAL_READS`: profiles, their records and history, their
  matches) are then logged in the same form; the reads of configuration and metadata
  (ListDomains, GetDomain, GetProfileObjectType, ...) never are. `audited` is the one decision.
* the web pages (ui.web.UI.page): every POST of a signed-in user, with the user's audit name
  (users.service.audit_name: a keyed digest, as usernames are personal data; `openprofiles
  users list` shows whose), the page's path and the status; signing out is one of them. And
  every sign-in attempt whose password was checked or refused by the throttle (ui.auth_pages),
  in the same form with its result (`sign_in`): the audit name is the digest of the name
  typed, a user's or not, so a failure reads the same for an unknown name as for a wrong
  password; a sign-in form refused unread (413, 415, 400) is logged with `user=-`.
  And every GET (or HEAD) by a signed-in user of a page that shows a customer's personal data
  (`ui GET /agent/domains/acme/profiles/<id> user=... status=200 answered=<id>`, `page_get`):
  who opened whose profile, refusals included. A page is one of them when it is declared so,
  with `shows_personal_data=True` at its `ui.page(...)`: a profile's page, its edit form and a
  record's page, the search results, the contact page (screen pop: the profiles linked to a
  contact or sharing its caller's number), a merge's page (its keys' values), a rule-based
  match's page and a merge's preview (values when asked for), a domain's dead letters (their
  reasons quote the records' values), a dead letter's page and its purge confirmation (the
  record in full): the pages' counterparts of the commands logged for printing personal data.
  Pages of names, ids and counts are not (the home pages, the lists of domains, merges and
  matches, the dead letters' counts, an ML match's page, which holds no values): what a user
  saw of a customer is on a page logged. Each line names the profiles the page showed, which
  its path does not (ui.web.show_profiles: a search's results, a contact's profiles, a merge's
  or a match's), as an API read's does (`answered_field`): `answered=-` for none (a dead
  letter's page, a refusal).
* the `openprofiles` command (cli_support.audit_commands, which wraps the commands it lists in
  cli_support.AUDITED_COMMANDS): each run of a command that changes state or prints stored
  personal data (`dlq show`, a dead letter's record), with the acting OS user's numeric uid
  (and, under sudo, that of the user who ran sudo: SUDO_UID, read by Settings), the command's
  path (`dlq purge`), the domain it was given, and how it ended (`cli_command`). Listings of
  names and counts are not logged. A command's own process writes the line, to the
  audit log's file, which the wrapper opens for the run (and a command whose file cannot be
  opened is refused); a command prints records from WARNING only (logging_setup.log_to_stderr:
  its stdout is what it did), so on a terminal the line is not shown.
* `serve --first-run-admin` (first_run): the admin credential and the web user `admin` it
  makes, by access key id and audit name (`first_run_admin`), with the acting OS user's uid.

A line never carries a request body nor a parameter's value beyond those: keys, names, phone
numbers and emails stay out (nor a command's other arguments: file paths, usernames, keys,
passwords). The domain name and the profile id are taken from the request, so
they are written only when they have their model's form (a name, a 32-digit hex id): a request
that fails validation could put any text there. So are the parameters of a page's address
(`page_post`, `page_get`): a user can type anything into it, so each has a strict form
(`_PAGE_PARAMETER_FORMS`), a name (a domain's, an object type's) is written only when the store
holds it (`NAMED_PAGE_PARAMETERS`: a customer's name has a name's form) and a sealed token is
written `(sealed)`; and a page's query (a search's sealed text, a cursor) is never written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

logger = logging.getLogger("openprofiles.audit")

# Operations that change nothing (Customer Profiles names them so: GetMatches, ListDomains,
# SearchProfiles, BatchGetProfile, DetectProfileObjectType).
READ_ONLY_PREFIXES = ("Get", "List", "Search", "BatchGet", "Detect")
# Record feeds: not logged one request at a time (see the module docstring).
FEED_OPERATIONS = frozenset({"PutProfileObject"})
# The reads that answer customers' personal data: logged only with
# OPENPROFILES_AUDIT_API_READS on (`audited`). Named by the model, implemented or not yet (a
# request of one not implemented is an attempt to read all the same), so that one implemented
# later is logged from its first day; every other read is configuration or metadata, or counts.
PERSONAL_READS = frozenset(
    {
        "SearchProfiles",
        "BatchGetProfile",
        "ListProfileObjects",
        "GetProfileHistoryRecord",
        "ListProfileHistoryRecords",
        "GetMatches",
        "GetSimilarProfiles",
        "ListRuleBasedMatches",
        "ListProfileAttributeValues",
        "BatchGetCalculatedAttributeForProfile",
        "GetCalculatedAttributeForProfile",
        "ListCalculatedAttributesForProfile",
        # A segment's members, in full (GetSegmentMembership), and who joined or left it.
        "GetSegmentMembership",
        "ListSegmentSubscriptionEvents",
        # The latest values of an object type's attribute, across its records.
        "ListObjectTypeAttributeValues",
        # What is recommended to a profile: derived from its own history.
        "GetProfileRecommendations",
        "SearchRecommendations",
    }
)

# The model's patterns of a domain name and of a profile id (botocore: `name`, `uuid`).
_DOMAIN_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_PROFILE_ID = re.compile(r"[a-f0-9]{32}")
# A POSIX uid as sudo writes SUDO_UID (decimal, 32 bits at most).
_UID = re.compile(r"[0-9]{1,10}")
# The inputs that name the profile a request changes (MergeProfiles: the one kept).
_PROFILE_MEMBERS = ("ProfileId", "MainProfileId")
NONE = "-"
# What stands for a value taken from a request that is not in its form.
NOT_VALID = "(not valid)"
# What a path keeps as it is when written (RFC 3986 pchar and "/"): no space, no control.
_PATH_SAFE = "/-._~!$&'()*+,;=:@"


def audited(operation: str | None, *, reads: bool) -> bool:
    """Whether requests of `operation` are logged: every operation that may change state but
    the record feeds, and with `reads` (Settings.audit_api_reads) the `PERSONAL_READS`."""
    if operation is None or not logger.isEnabledFor(logging.INFO):
        return False
    if operation.startswith(READ_ONLY_PREFIXES):
        return reads and operation in PERSONAL_READS
    return operation not in FEED_OPERATIONS


def _shown(value: Any, form: re.Pattern[str]) -> str:
    if isinstance(value, str) and form.fullmatch(value):
        return value
    return NONE if value is None else NOT_VALID


def profile_named(members: Mapping[str, Any]) -> str | None:
    """The profile id a request's input names, or its result reports (CreateProfile's); None
    when it has none."""
    for member in _PROFILE_MEMBERS:
        value = members.get(member)
        if value is not None:
            return value if isinstance(value, str) else None
    return None


def api_request(
    operation: str,
    *,
    domain_name: str | None,
    access_key_id: str | None,
    status: int,
    error: str | None,
    profile_id: str | None,
    answered: Sequence[str] | None = None,
) -> None:
    """Log one API request (call only for `audited` operations). `access_key_id` is None when
    the request was not authenticated; `error` is the AWS error type of a failed request;
    `answered`, for a read of `PERSONAL_READS`, the profiles its answer held
    (`profiles_answered`; None: not such a read, or it failed)."""
    logger.info(
        "api %s domain=%s caller=%s status=%d%s profile=%s%s",
        operation,
        _shown(domain_name, _DOMAIN_NAME),
        access_key_id or NONE,
        status,
        f" error={error}" if error else "",
        _shown(profile_id, _PROFILE_ID),
        "" if answered is None else answered_field(answered),
    )


def answered_field(profile_ids: Sequence[str]) -> str:
    """The end of a line that says whose data it handed out (an API read's answer, a page's):
    " answered=" and the profile ids, "-" for none. The one form of both."""
    return f" answered={','.join(profile_ids) or NONE}"


def profile_ids(values: Iterable[Any]) -> list[str]:
    """`values` that are profile ids of the model's form, in their order, each once."""
    found: list[str] = []
    for value in values:
        if isinstance(value, str) and _PROFILE_ID.fullmatch(value) and value not in found:
            found.append(value)
    return found


# The members of a read's answer that list profiles, each item naming one by ProfileId or
# several by ProfileIds (SearchProfiles' Items, BatchGetProfile's Profiles, GetMatches'
# Matches, GetSegmentMembership's Profiles, ListSegmentSubscriptionEvents' Events); ProfileIds
# at the top (GetSimilarProfiles). Not BatchGetProfile's Errors: the ids it did not find, which
# the caller named and was told nothing of.
_ANSWER_LISTS = ("Items", "Profiles", "Matches", "Events")


def profiles_answered(result: Mapping[str, Any]) -> list[str]:
    """The profile ids a read's answer held, in its order, each once: so that the audit log
    says whose data a search or a batch read handed to a key, not only that it searched (the
    query's values stay out). Only ids of the model's form."""
    named: list[Any] = list(result.get("ProfileIds") or ())
    for member in _ANSWER_LISTS:
        for item in result.get(member) or ():
            if isinstance(item, Mapping):
                named.append(item.get("ProfileId"))
                named.extend(item.get("ProfileIds") or ())
    return profile_ids(named)


# The form of each path parameter of the pages' routes (ui) written as it is, as this code
# makes its values: a user can type anything into an address, a customer's phone number where
# an id goes included, so each form is as strict as the ids it stands for. A parameter with no
# form here is never written (NOT_VALID): a new route's parameter is declared here first
# (tests/unit/ui/test_ui_audit_reads.py checks every route's).
#
# The names among them (`NAMED_PAGE_PARAMETERS`) need more than their form: see there.
_PAGE_PARAMETER_FORMS = {
    # Domain names (the model's `name`; "name" on the administrator's pages).
    "domain": _DOMAIN_NAME,
    "name": _DOMAIN_NAME,
    "profile_id": _PROFILE_ID,
    # An object type's name (the model's `typeName`).
    "object_type": re.compile(r"[a-zA-Z_][a-zA-Z_0-9-]{0,254}"),
    # Amazon Connect's ContactId, a UUID. The pages open any contact id a profile key can hold
    # (ui.agent_pages.checked_contact_id), but one of another form is written NOT_VALID: it is
    # a link's text, and may be a value an agent typed there (a caller's number).
    "contact_id": re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"),
    # 32 hex digits, as a profile id: dlq.service.new_message_id, identity.service's
    # uuid4().hex.
    "message_id": _PROFILE_ID,
    "merge_id": _PROFILE_ID,
    # An ML match's 32 random hex digits; a rule-based one's level (2 digits) and digest in hex
    # (identity.matching.match_id). And which of the two (ui.match_pages.KINDS).
    "match_id": re.compile(r"(?:[0-9]{2})?[a-f0-9]{32}"),
    "kind": re.compile(r"rule|ml"),
    # auth.credentials.create_credential's.
    "access_key_id": re.compile(r"OP[A-Z0-9]{18}"),
}
# The parameters that name something by the name a person gave it: a domain's, an object
# type's. Their forms are a name's, which a value typed into an address fits too (a surname,
# "Zenobia_Quist"; a phone number, as a domain name may be all digits): a user who typed a
# customer's name or number where a domain goes, and was refused (404, 400), had it written as
# it was. No form tells the two apart, and a refusal's status does not either (a form refused
# on an existing domain is 400 too; a redirect to the password page, 303, looked at nothing).
# So one of them is written as it is only when the store holds what it names (`confirmed`:
# ui.web.UI.page looks the names up before the page runs, so that a page that removes what it
# names is still written with it): the domain, if it exists; the object type, if that domain
# has one of the name (explicit, or a template's). A held name is one an administrator chose,
# not a value typed; any other is NOT_VALID.
NAMED_PAGE_PARAMETERS = frozenset({"domain", "name", "object_type"})
# The parameters that carry a sealed token (services.tokens: a user's reference, which seals
# the username; a record's link, which seals its key): written SEALED, never as they are, as a
# token says nothing an operator could read and a valid one is no more "(not valid)" than an id.
_SEALED_PAGE_PARAMETERS = frozenset({"ref", "object_link"})
SEALED = "(sealed)"
# A parameter in a route's template: {name} or {name:convertor}.
_PLACEHOLDER = re.compile(r"\{(\w+)(?::\w+)?\}")


def in_page_form(name: str, value: Any) -> bool:
    """Whether `value`, of the page's path parameter `name`, has its form (`_PAGE_PARAMETER_FORMS`;
    none: False)."""
    form = _PAGE_PARAMETER_FORMS.get(name)
    return form is not None and isinstance(value, str) and form.fullmatch(value) is not None


def page_post(
    *,
    user: str,
    path: str,
    status: int,
    result: str | None = None,
    route: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    confirmed: Collection[str] = (),
) -> None:
    """Log one POST of a signed-in web user, named by `user`, their audit name (`result`: what
    came of it, when the status alone does not say); its path as `page_path` writes it."""
    logger.info(
        "ui POST %s user=%s status=%d%s",
        page_path(path, route, parameters, confirmed),
        user,
        status,
        f" result={result}" if result else "",
    )


def page_get(
    *,
    user: str,
    path: str,
    status: int,
    route: str | None,
    parameters: Mapping[str, Any],
    answered: Iterable[Any] = (),
    confirmed: Collection[str] = (),
) -> None:
    """Log one GET of a page that shows a customer's personal data by the signed-in web user
    `user` (their audit name), as `page_post` logs a POST; never its query. `answered`: the
    profiles whose data the page showed (ui.web.show_profiles), written as an API read's
    (`answered_field`): the line of a search's results or a contact's page names whose values
    the user saw, which its path does not."""
    logger.info(
        "ui GET %s user=%s status=%d%s",
        page_path(path, route, parameters, confirmed),
        user,
        status,
        answered_field(profile_ids(answered)),
    )


def page_path(
    path: str,
    route: str | None,
    parameters: Mapping[str, Any] | None,
    confirmed: Collection[str] = (),
) -> str:
    """A page's path as an audit line writes it. No page puts a personal value in its address
    (ui.web), but a request can: an email address typed where a profile id goes. So the path is
    written from its `route`'s template (Starlette's, "/agent/domains/{domain}"), each of the
    path `parameters` in it as it is when in its form (`_PAGE_PARAMETER_FORMS`), else "(not
    valid)", as for an API request, and a sealed token as SEALED; percent-encoded, as a
    request could put a line break in it. A name (`NAMED_PAGE_PARAMETERS`) is written as it is
    only when it is also among `confirmed`, the parameters whose names the store holds. `path`
    itself (decoded, as sent) only for a page of no route or no parameters."""
    if route is not None and parameters:

        def shown(placeholder: re.Match[str]) -> str:
            name = placeholder.group(1)
            if name in _SEALED_PAGE_PARAMETERS:
                return SEALED
            if name in NAMED_PAGE_PARAMETERS and name not in confirmed:
                return NOT_VALID
            form = _PAGE_PARAMETER_FORMS.get(name)
            return NOT_VALID if form is None else _shown(str(parameters.get(name, "")), form)

        path = _PLACEHOLDER.sub(shown, route)
    return quote(path, safe=_PATH_SAFE)


# How a command ended (`cli_command`): it returned (or exited with status 0), it failed (an
# error, a refusal, a non-zero exit status), or Ctrl-C stopped it.
CLI_OK = "ok"
CLI_FAILED = "failed"
CLI_INTERRUPTED = "interrupted"


def cli_command(
    path: str,
    *,
    uid: int | None,
    sudo_uid: str | None = None,
    domain_name: str | None,
    result: str,
    error: str | None,
) -> None:
    """Log one run of an `openprofiles` command: `path` is its place in the command tree ("dlq
    purge": names from the code, never from the command line), `uid` the acting OS user's
    numeric id (None where the system has none), `sudo_uid` the invoking user's under sudo
    (Settings.sudo_uid, the environment's text: written only when it has a uid's form; none
    without sudo), `domain_name` the domain it was given (None: it takes none), `result`
    CLI_OK, CLI_FAILED or CLI_INTERRUPTED and `error` the failure's type (the AWS error type of
    a service's error)."""
    logger.info(
        "cli %s uid=%s%s domain=%s result=%s%s",
        path,
        NONE if uid is None else uid,
        "" if sudo_uid is None else f" sudo_uid={_shown(sudo_uid, _UID)}",
        _shown(domain_name, _DOMAIN_NAME),
        result,
        f" error={error}" if error else "",
    )


def first_run_admin(made: str, *, name: str, uid: int | None, sudo_uid: str | None = None) -> None:
    """Log what `serve --first-run-admin` made: `made` "credential" (`name` its access key id)
    or "web-user" (`name` its audit name, users.service.audit_name), both with the role admin,
    by the OS user `uid` (and `sudo_uid`, as `cli_command`). Never the secret or the password,
    which only the owner-only files in the data dir hold."""
    logger.info(
        "first-run-admin created %s=%s role=admin uid=%s%s",
        made,
        name,
        NONE if uid is None else uid,
        "" if sudo_uid is None else f" sudo_uid={_shown(sudo_uid, _UID)}",
    )


# What came of a sign-in attempt (`sign_in`).
SIGNED_IN = "signed-in"
# A wrong password or a name that is no user's: one result, so the line does not say which.
SIGN_IN_FAILED = "failed"
# Refused by the throttle (users.throttle) before the password was checked.
SIGN_IN_LOCKED = "locked"
SIGN_IN_PATH = "/ui/sign-in"


def sign_in(*, user: str, status: int, result: str) -> None:
    """Log one sign-in attempt: `user` is the audit name of the name typed (users.service
    .audit_name, keyed: the name itself never), whether or not a user has it; `result` is
    SIGNED_IN, SIGN_IN_FAILED or SIGN_IN_LOCKED. No password, nor the client's address (no
    audit line carries one)."""
    page_post(user=user, path=SIGN_IN_PATH, status=status, result=result)
