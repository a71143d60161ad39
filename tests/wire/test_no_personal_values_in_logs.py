"""No personal value and no secret reaches a log, end to end: a live server (both backends) is
driven through every way data comes in — the AWS API (the operations it serves, the calls it
refuses included, since error paths are where values leak), the contact-record feed, the web
pages (sign-in, search, edits) and the `dlq` command — with values that each carry MARK, and
then no log record (any logger, from DEBUG), no line of the audit log's file and no line of
GET /metrics holds MARK, one of the phone numbers, an access key's secret or a web user's
password.

The records are those a test runner sees at DEBUG from the root, OpenProfiles' and uvicorn's
loggers (the server runs in this process). The AWS SDK's loggers stay where logging_setup holds
them (WARNING, whatever the root's level: their DEBUG records are whole requests, the test's own
client's included). The unit checks of each part are tests/unit/app/test_logging_setup.py,
tests/cli/test_serve_logging.py, tests/wire/test_audit_log_api.py (and the database's,
tests/contract/test_sealed_at_rest.py)."""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from tests.support.backends import database_url_for
from tests.support.server import LiveServer, run_server
from tests.unit.integrations.integ_helpers import ctr
from tests.unit.ui.test_ui_pages import _FormFields
from tests.wire.test_contact_records_http import post as post_signed
from tests.wire.test_objects_api import CRM

from openprofiles import logging_setup
from openprofiles.cli import main
from openprofiles.crypto.keyring import Keyring
from openprofiles.dlq.service import list_messages
from openprofiles.settings import Settings

# Every personal value below contains MARK (compared case-insensitively: keys are normalised).
MARK = "zqxleak"
# Phone numbers cannot carry letters: their digits are looked for instead.
PHONE = "+12065558127"
CONTACT_PHONE = "+12065559431"
PHONE_DIGITS = ("2065558127", "2065559431")
WEB_PASSWORD = f"{MARK}-web password long enough"


def mark(what: str) -> str:
    return f"{MARK}{what}"


def email(what: str) -> str:
    return f"{mark(what)}@example.com"


# Levels lowered for the test: the root's (every library), and the loggers a server gives a level
# of their own (logging_setup.serving_log_config; run_server's uvicorn is at WARNING).
CAPTURED_LOGGERS = (None, "openprofiles", logging_setup.AUDIT_LOGGER, "uvicorn", "uvicorn.error")
# The test's own HTTP clients (boto3's urllib3, httpx) log at DEBUG and INFO each address the
# test requests, marked values put there on purpose included. A server prints no record of
# theirs below WARNING (logging_setup: other libraries' from WARNING), so only those are read.
CLIENT_LOGGERS = ("urllib3", "httpx", "httpcore")


@dataclass
class Logs:
    caplog: pytest.LogCaptureFixture
    audit_file: Path
    secrets: tuple[str, ...]

    def leaks(self, *more: tuple[str, str]) -> list[str]:
        """Each place (a record, the audit file, a text given in `more`) holding a marked value,
        with what it holds."""
        places = [(_where(r), _record_text(r)) for r in self.caplog.records if _server_side(r)]
        places.append(("the audit log's file", self.audit_file.read_text("utf-8")))
        places.extend(more)
        found = []
        for where, text in places:
            for line in text.splitlines():
                lowered = line.lower()
                for value in (MARK, *PHONE_DIGITS, *self.secrets):
                    if value.lower() in lowered:
                        found.append(f"{where} holds {value!r}: {line[:600]!r}")
        return found

    def assert_none(self, live_server: LiveServer, *more: tuple[str, str]) -> None:
        metrics = httpx.get(live_server.url + "/metrics", timeout=10)
        assert metrics.status_code == 200
        # The records were captured at all (one stopped by a level would pass unnoticed).
        assert any(r.name == logging_setup.AUDIT_LOGGER for r in self.caplog.records)
        leaks = self.leaks(("GET /metrics", metrics.text), *more)
        assert leaks == [], "personal values or secrets logged:\n" + "\n".join(leaks)


def _server_side(record: logging.LogRecord) -> bool:
    client = record.name.split(".")[0] in CLIENT_LOGGERS
    return not client or record.levelno >= logging.WARNING


def _where(record: logging.LogRecord) -> str:
    return f"{record.levelname} record of {record.name} ({record.pathname}:{record.lineno})"


def _record_text(record: logging.LogRecord) -> str:
    """Everything a handler could print of `record`: its message formatted and as given, its
    arguments, its exception and stack, and any attribute a caller added (`extra`)."""
    parts = [record.getMessage(), repr(vars(record))]
    if record.exc_info and record.exc_info[1] is not None:
        # logging_setup drops the exception once rendered; one left is printed in full.
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    return "\n".join(parts)


@contextmanager
def _capturing(caplog: pytest.LogCaptureFixture, server: LiveServer) -> Iterator[Logs]:
    for name in CAPTURED_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    audit_file = server.settings.audit_log_file
    assert audit_file is not None
    # The server's processes append the audit lines to this file (serving_log_config); the
    # in-process server of the tests has no such handler, so it is attached here. The `dlq`
    # command's run writes to the same file (cli_support.audit_commands).
    with logging_setup.audit_to(logging_setup.AuditFileHandler(audit_file)):
        yield Logs(
            caplog=caplog,
            audit_file=audit_file,
            secrets=(server.admin_key[1], server.agent_key[1], WEB_PASSWORD),
        )


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, live_server: LiveServer) -> Iterator[Logs]:
    with _capturing(caplog, live_server) as captured:
        yield captured


def _attempt(call: Callable[..., Any], **params: Any) -> str | None:
    """The error code of a call the server refuses, None when it took the call."""
    try:
        call(**params)
    except ClientError as refused:
        return str(refused.response["Error"]["Code"])
    return None


def _new_domain(live_server: LiveServer, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    live_server.client().create_domain(
        DomainName=name, DefaultExpirationDays=30, Tags={"owner": mark("tag")}
    )
    return name


def test_the_api_logs_no_personal_value(live_server: LiveServer, logs: Logs) -> None:
    admin = live_server.client("admin")
    agent = live_server.client("agent")
    # Sends what the model refuses, for the server's own checks to answer.
    loose = live_server.client("admin", parameter_validation=False)
    domain = _new_domain(live_server, "leak-api")
    admin.update_domain(DomainName=domain, Tags={"team": mark("tagvalue")})
    arn = admin.get_domain(DomainName=domain).get("DomainArn") or (
        f"arn:aws:profile:{live_server.settings.region}:000000000000:domains/{domain}"
    )
    admin.tag_resource(resourceArn=arn, tags={"note": mark("tagged")})
    admin.list_tags_for_resource(resourceArn=arn)
    admin.untag_resource(resourceArn=arn, tagKeys=["note"])
    admin.put_profile_object_type(DomainName=domain, ObjectTypeName="Crm", **CRM)
    closed = {**CRM, "AllowProfileCreation": False}
    admin.put_profile_object_type(DomainName=domain, ObjectTypeName="Closed", **closed)
    admin.list_profile_object_types(DomainName=domain)
    admin.get_profile_object_type(DomainName=domain, ObjectTypeName="Crm")
    admin.list_profile_object_type_templates()
    admin.list_domains()

    profile = agent.create_profile(
        DomainName=domain,
        FirstName=mark("first"),
        MiddleName=mark("middle"),
        LastName=mark("last"),
        EmailAddress=email("email"),
        PersonalEmailAddress=email("personal"),
        PhoneNumber=PHONE,
        AccountNumber=mark("account"),
        BusinessName=mark("business"),
        BirthDate="1970-01-01",
        Address={"Address1": mark("street"), "City": mark("city"), "PostalCode": "98101"},
        Attributes={"loyalty": mark("attribute")},
    )["ProfileId"]
    other = agent.create_profile(
        DomainName=domain, FirstName=mark("otherfirst"), EmailAddress=email("other")
    )["ProfileId"]

    admin.put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Object=json.dumps(
            {"id": mark("crmid"), "email": email("email"), "order": mark("order")},
        ),
    )
    batch = admin.batch_put_profile_object(
        DomainName=domain,
        ObjectTypeName="Crm",
        Items=[
            {"Id": "good", "Object": json.dumps({"id": mark("crm2"), "email": email("batch")})},
            # Not JSON, and JSON but not an object: refused item by item.
            {"Id": "broken", "Object": f'{{"id": "{mark("broken")}", "email": '},
            {"Id": "list", "Object": json.dumps([mark("listed")])},
        ],
    )
    assert {f["Id"] for f in batch["Failed"]} == {"broken", "list"}
    # No profile to attach these to, and the type may not create one: dead-lettered.
    stranger = json.dumps({"id": mark("strangerid"), "email": email("stranger")})
    admin.put_profile_object(DomainName=domain, ObjectTypeName="Closed", Object=stranger)
    dead = admin.batch_put_profile_object(
        DomainName=domain,
        ObjectTypeName="Closed",
        Items=[{"Id": "stranger", "Object": stranger.replace("strangerid", "strangerid2")}],
    )
    assert [f["Id"] for f in dead["Failed"]] == ["stranger"]
    with live_server.services.read() as tx:
        assert len(list_messages(tx, domain_name=domain)) == 2
    # Objects that fail the pipeline's own checks.
    for refused_object in (
        f'{{"id": "{mark("badjson")}"',
        json.dumps({"id": mark("bademailobj"), "email": f"{mark('bademailobj')}@@nowhere"}),
        json.dumps({"id": mark("long"), "email": email("long"), "first": mark("x" * 300)}),
        json.dumps({"id": mark("huge"), "order": mark("y" * 400_000)}),
    ):
        _attempt(
            admin.put_profile_object, DomainName=domain, ObjectTypeName="Crm", Object=refused_object
        )

    for key, value in (
        ("_email", email("email")),
        ("_phone", PHONE),
        ("_fullName", f"{mark('first')} {mark('middle')} {mark('last')}"),
        ("_account", mark("account")),
        ("crmId", mark("crmid")),
        ("orderRef", mark("order")),
        ("_email", email("nobody")),
    ):
        agent.search_profiles(DomainName=domain, KeyName=key, Values=[value])
    agent.search_profiles(
        DomainName=domain,
        AdditionalSearchKeys=[{"KeyName": "_phone", "Values": [PHONE]}],
        KeyName="_email",
        Values=[email("email")],
        LogicalOperator="AND",
    )
    agent.batch_get_profile(DomainName=domain, ProfileIds=[profile, other])
    objects = agent.list_profile_objects(
        DomainName=domain, ObjectTypeName="Crm", ProfileId=profile
    )["Items"]
    agent.list_profile_objects(
        DomainName=domain,
        ObjectTypeName="Crm",
        ProfileId=profile,
        ObjectFilter={"KeyName": "orderRef", "Values": [mark("order")]},
    )

    agent.update_profile(
        DomainName=domain,
        ProfileId=profile,
        FirstName=mark("renamed"),
        Address={"City": mark("newcity")},
        Attributes={"loyalty": mark("gold"), "note": mark("note")},
    )
    agent.add_profile_key(
        DomainName=domain, ProfileId=profile, KeyName="_email", Values=[email("addedkey")]
    )
    agent.add_profile_key(
        DomainName=domain, ProfileId=profile, KeyName="crmId", Values=[mark("addedcrm")]
    )
    admin.delete_profile_key(
        DomainName=domain, ProfileId=profile, KeyName="_email", Values=[email("addedkey")]
    )

    # Refused calls, each with a marked value where the refusal is decided.
    missing = "0" * 32
    refusals = [
        _attempt(loose.create_profile, DomainName=domain, EmailAddress=f"{mark('bad')}@@x"),
        _attempt(loose.create_profile, DomainName=domain, FirstName=mark("z" * 300)),
        _attempt(loose.create_profile, DomainName=domain, PhoneNumber=f"+1{mark('phone')}"),
        _attempt(loose.create_profile, DomainName=domain, BirthDate=mark("notadate")),
        # A domain name of its model's form is written as it is (not a personal value): not so
        # what has no such form.
        _attempt(loose.create_profile, DomainName=email("domain"), FirstName=mark("first")),
        _attempt(loose.create_profile, DomainName=domain, Gender=mark("gender")),
        _attempt(
            loose.update_profile, DomainName=domain, ProfileId=missing, FirstName=mark("gone")
        ),
        _attempt(
            loose.update_profile, DomainName=domain, ProfileId=mark("id"), LastName=mark("id2")
        ),
        _attempt(
            loose.update_profile, DomainName=domain, ProfileId=profile, EmailAddress=mark("no@")
        ),
        _attempt(
            loose.search_profiles, DomainName=domain, KeyName=mark("key"), Values=[mark("sv")]
        ),
        _attempt(
            loose.search_profiles,
            DomainName=domain,
            KeyName="_email",
            Values=[mark(str(n)) for n in range(200)],
        ),
        _attempt(loose.search_profiles, DomainName=domain, KeyName="_phone", Values=[mark("p")]),
        _attempt(
            loose.add_profile_key,
            DomainName=domain,
            ProfileId=profile,
            KeyName=mark("nokey"),
            Values=[mark("nokeyvalue")],
        ),
        _attempt(
            loose.add_profile_key,
            DomainName=domain,
            ProfileId=missing,
            KeyName="_email",
            Values=[email("nobodyskey")],
        ),
        _attempt(
            loose.add_profile_key,
            DomainName=domain,
            ProfileId=other,
            KeyName="_email",
            Values=[mark("v" * 300)],
        ),
        _attempt(
            loose.delete_profile_key,
            DomainName=domain,
            ProfileId=profile,
            KeyName="_email",
            Values=[mark("notakey")],
        ),
        _attempt(
            loose.merge_profiles,
            DomainName=domain,
            MainProfileId=profile,
            ProfileIdsToBeMerged=[mark("merged")],
        ),
        _attempt(
            loose.put_profile_object,
            DomainName=domain,
            ObjectTypeName=mark("type"),
            Object=json.dumps({"id": mark("typeless")}),
        ),
        _attempt(
            loose.put_profile_object_type,
            DomainName=domain,
            ObjectTypeName="Broken",
            Description=mark("description"),
            Fields={"f": {"Source": mark("source")}},
            Keys={"k": [{"FieldNames": [mark("field")]}]},
        ),
        _attempt(
            loose.list_profile_objects,
            DomainName=domain,
            ObjectTypeName="Crm",
            ProfileId=profile,
            ObjectFilter={"KeyName": mark("filterkey"), "Values": [mark("filtervalue")]},
        ),
        _attempt(
            loose.delete_profile_object,
            DomainName=domain,
            ProfileId=profile,
            ProfileObjectUniqueKey=mark("uniquekey"),
            ObjectTypeName="Crm",
        ),
        _attempt(loose.get_domain, DomainName=email("nodomain")),
        _attempt(loose.tag_resource, resourceArn=mark("arn"), tags={"k": mark("tagv")}),
    ]
    # Some are taken as AWS takes them (any text is an email address to CreateProfile); the
    # others reached the server's refusals, of both kinds.
    assert {"BadRequestException", "ResourceNotFoundException"} <= set(refusals)
    # Bodies no SDK would send: members of the wrong type, and no JSON at all.
    for body in (
        json.dumps({"Attributes": [mark("notamap")], "FirstName": {"x": mark("notastring")}}),
        json.dumps({"EmailAddress": mark("e" * 2000), "Unknown": mark("unknown")}),
        f'{{"FirstName": "{mark("cutbody")}"',
    ):
        raw = post_signed(live_server, f"/domains/{domain}/profiles", body)
        assert raw.status_code == 400, raw.text

    merged = agent.create_profile(
        DomainName=domain, LastName=mark("mergedlast"), PhoneNumber=CONTACT_PHONE
    )["ProfileId"]
    admin.merge_profiles(
        DomainName=domain,
        MainProfileId=profile,
        ProfileIdsToBeMerged=[merged],
        FieldSourceProfileIds={"LastName": merged},
    )
    # Matching is off in this domain: refused, the similar-profiles search with its value too.
    _attempt(admin.get_matches, DomainName=domain)
    _attempt(admin.list_rule_based_matches, DomainName=domain)
    _attempt(
        admin.get_auto_merging_preview,
        DomainName=domain,
        Consolidation={"MatchingAttributesList": [["EmailAddress"]]},
        ConflictResolution={"ConflictResolvingModel": "RECENCY"},
    )
    _attempt(admin.list_identity_resolution_jobs, DomainName=domain)
    instance = _instance()
    admin.put_integration(DomainName=domain, Uri=instance)
    admin.get_integration(DomainName=domain, Uri=instance)
    admin.list_integrations(DomainName=domain)
    admin.list_account_integrations(Uri=instance)
    admin.delete_integration(DomainName=domain, Uri=instance)
    _attempt(
        admin.get_similar_profiles,
        DomainName=domain,
        MatchType="RULE_BASED_MATCHING",
        SearchKey="_email",
        SearchValue=email("similar"),
    )
    admin.delete_profile_object(
        DomainName=domain,
        ProfileId=profile,
        ProfileObjectUniqueKey=objects[0]["ProfileObjectUniqueKey"],
        ObjectTypeName="Crm",
    )
    admin.delete_profile(DomainName=domain, ProfileId=other)
    admin.delete_profile_object_type(DomainName=domain, ObjectTypeName="Closed")

    logs.assert_none(live_server)
    admin.delete_domain(DomainName=domain)
    logs.assert_none(live_server)


def _instance() -> str:
    return f"arn:aws:connect:us-east-1:111122223333:instance/{uuid.uuid4()}"


def test_the_contact_record_feed_logs_no_personal_value(
    live_server: LiveServer, logs: Logs
) -> None:
    domain = _new_domain(live_server, "leak-ctr")
    instance = _instance()
    live_server.client().put_integration(DomainName=domain, Uri=instance)
    marked = {"Attributes": {"caller": mark("ctrattribute")}}
    records = [
        ctr("leak-v1", instance=instance, address=CONTACT_PHONE, **marked),
        ctr("leak-c1", channel="CHAT", instance=instance, address=email("ctr"), **marked),
        # Refused: an address that is no phone number, an instance no domain has, no id.
        ctr("leak-v2", instance=instance, address=f"+1{mark('notaphone')}", **marked),
        ctr("leak-v3", instance=_instance(), address=email("unknowninstance"), **marked),
        {"InstanceARN": instance, "CustomerEndpoint": {"Address": email("noid")}},
        {"ContactId": mark("contactid"), "Channel": mark("channel")},
        [mark("notarecord")],
    ]
    sent = post_signed(live_server, "/contact-records", json.dumps(records))
    assert sent.status_code == 200
    assert sent.json()["Rejected"], sent.text
    # A body refused whole, and a contact event.
    post_signed(live_server, "/contact-records", f'[{{"ContactId": "{mark("cut")}"')
    event = {
        "ContactId": "leak-live-1",
        "InitiationTimestamp": "2022-04-08T14:59:38Z",
        "Channel": "VOICE",
        "InstanceARN": instance,
        "CustomerEndpoint": {"Address": CONTACT_PHONE, "Type": "TELEPHONE_NUMBER"},
    }
    post_signed(live_server, "/contact-events", json.dumps(event))
    post_signed(
        live_server,
        "/contact-events",
        json.dumps({**event, "CustomerEndpoint": {"Address": mark("badaddress")}}),
    )
    found = live_server.client().search_profiles(
        DomainName=domain, KeyName="_phone", Values=[CONTACT_PHONE]
    )["Items"]
    assert found
    # Records of an instance no domain has yet are kept, and replayed when one takes it (the
    # replay is told in the log, integrations.handlers).
    waiting = _instance()
    kept = [
        ctr("leak-k1", instance=waiting, address=email("kept"), channel="CHAT", **marked),
        ctr("leak-k2", instance=waiting, address=f"+1{mark('keptbad')}", **marked),
    ]
    assert post_signed(live_server, "/contact-records", json.dumps(kept)).status_code == 200
    live_server.client().put_integration(DomainName=domain, Uri=waiting)
    assert any("kept contact records" in r.getMessage() for r in logs.caplog.records)

    logs.assert_none(live_server)


def _fields(html: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(html)
    return parser.fields


@contextmanager
def _signed_in(live_server: LiveServer, username: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=10) as client:
        page = client.get("/ui/sign-in")
        answer = client.post(
            "/ui/sign-in",
            data={**_fields(page.text), "username": username, "password": WEB_PASSWORD},
        )
        assert answer.status_code == 303, answer.text
        yield client


def test_the_web_pages_log_no_personal_value(live_server: LiveServer, logs: Logs) -> None:
    domain = _new_domain(live_server, "leak-ui")
    profile = (
        live_server.client("agent")
        .create_profile(DomainName=domain, FirstName=mark("uifirst"), EmailAddress=email("ui"))
        .get("ProfileId")
    )
    agent_name, admin_name = mark("agent"), mark("admin")
    live_server.create_web_user(agent_name, WEB_PASSWORD, "agent")
    live_server.create_web_user(admin_name, WEB_PASSWORD, "admin")

    with httpx.Client(base_url=live_server.url, timeout=10) as stranger:
        form = _fields(stranger.get("/ui/sign-in").text)
        for username, password in (
            (mark("nosuchuser"), WEB_PASSWORD),
            (agent_name, mark("wrong password long enough")),
        ):
            refused = stranger.post(
                "/ui/sign-in", data={**form, "username": username, "password": password}
            )
            assert refused.status_code in (400, 401, 403, 429), refused.status_code

    with _signed_in(live_server, agent_name) as agent:
        home = _fields(agent.get(f"/agent/domains/{domain}").text)
        for query in (email("ui"), mark("uifirst"), mark("nobody"), "+1" + mark("q")):
            found = agent.post(f"/agent/domains/{domain}", data={**home, "q": query, "key": "auto"})
            assert found.status_code == 303, found.text
            # Where the results are is an address, which access logs and proxies write down.
            assert MARK not in found.headers["location"].lower()
            assert agent.get(found.headers["location"]).status_code == 200
        edit = f"/agent/domains/{domain}/profiles/{profile}/edit"
        form = _fields(agent.get(edit).text)
        saved = agent.post(edit, data={**form, "FirstName": mark("uiedited")})
        assert saved.status_code == 303, saved.text
        form = _fields(agent.get(edit).text)
        refused = agent.post(edit, data={**form, "EmailAddress": f"{mark('uibad')}@@x"})
        assert refused.status_code == 400
        new = f"/agent/domains/{domain}/profiles/new"
        created = agent.post(new, data={**_fields(agent.get(new).text), "LastName": mark("uinew")})
        assert created.status_code == 303, created.text
        assert agent.get(f"/agent/domains/{domain}/profiles/{profile}").status_code == 200

    with _signed_in(live_server, admin_name) as admin:
        users_page = _fields(admin.get("/admin/users").text)
        new_user = admin.post(
            "/admin/users",
            data={
                **users_page,
                "username": mark("created"),
                "role": "agent",
                "password": WEB_PASSWORD + "2",
                "password_confirm": WEB_PASSWORD + "2",
                "your_password": WEB_PASSWORD,
            },
        )
        assert new_user.status_code == 303, new_user.text
        # The page's notice names the user: it travels sealed, not in the address.
        assert MARK not in new_user.headers["location"].lower()
        assert admin.get(f"/admin/domains/{domain}/dlq").status_code == 200
        own = _fields(admin.get("/ui/password").text)
        # A wrong current password is refused (400), the right one changes it (303).
        for current, status in ((mark("not the password at all"), 400), (WEB_PASSWORD, 303)):
            changed = admin.post(
                "/ui/password",
                data={
                    **own,
                    "current_password": current,
                    "new_password": mark("a new password long enough"),
                    "new_password_confirm": mark("a new password long enough"),
                },
            )
            assert changed.status_code == status, changed.text

    logs.assert_none(live_server)


def test_the_dlq_command_logs_no_personal_value(live_server: LiveServer, logs: Logs) -> None:
    domain = _new_domain(live_server, "leak-dlq")
    client = live_server.client()
    client.put_profile_object_type(
        DomainName=domain, ObjectTypeName="Closed", **{**CRM, "AllowProfileCreation": False}
    )
    letter = json.dumps({"id": mark("dlqid"), "email": email("dlq")})
    client.put_profile_object(DomainName=domain, ObjectTypeName="Closed", Object=letter)
    storage = ["--data-dir", str(live_server.settings.data_dir)]
    if live_server.settings.database_url:
        storage += ["--database-url", live_server.settings.database_url]
    runner = CliRunner()
    listed = runner.invoke(main, ["dlq", "list", *storage, "--domain", domain])
    assert listed.exit_code == 0, listed.output
    message_id = listed.stdout.split()[0]
    shown = runner.invoke(main, ["dlq", "show", *storage, "--domain", domain, message_id])
    assert shown.exit_code == 0, shown.output
    # It shows the record (stdout is what the command was asked for), and logs none of it.
    assert mark("dlqid") in shown.stdout

    logs.assert_none(
        live_server, ("dlq list's stderr", listed.stderr), ("dlq show's stderr", shown.stderr)
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def uncached_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    """A server that uses no cached data key: a key disabled is noticed at the next request."""
    with database_url_for(request.param, tmp_path) as url:
        settings = Settings(data_dir=tmp_path / "data", database_url=url, data_key_cache_seconds=0)
        with run_server(settings) as server:
            yield server


def test_a_disabled_domain_key_logs_no_personal_value(
    uncached_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A key that cannot be used is logged (ui.web, wire.dispatch: the domain and the reason),
    for requests whose values stay out of it."""
    server = uncached_server
    keyring = Keyring(server.settings.keyring_path)
    key = keyring.create_key("tenant")
    domain = f"leak-key-{uuid.uuid4().hex[:8]}"
    client = server.client()
    client.create_domain(
        DomainName=domain,
        DefaultExpirationDays=30,
        DefaultEncryptionKey=key.arn(server.settings.region, server.settings.account_id),
    )
    client.put_profile_object_type(DomainName=domain, ObjectTypeName="Crm", **CRM)
    instance = _instance()
    client.put_integration(DomainName=domain, Uri=instance)
    profile = client.create_profile(
        DomainName=domain, FirstName=mark("keyfirst"), EmailAddress=email("key")
    )["ProfileId"]
    server.create_web_user(mark("keyagent"), WEB_PASSWORD, "agent")

    with _capturing(caplog, server) as logs:
        keyring.disable(key.key_id)
        for call, params in (
            (client.search_profiles, {"KeyName": "_email", "Values": [email("key")]}),
            (client.create_profile, {"FirstName": mark("keynew"), "PhoneNumber": PHONE}),
            (client.update_profile, {"ProfileId": profile, "LastName": mark("keylast")}),
            (
                client.put_profile_object,
                {
                    "ObjectTypeName": "Crm",
                    "Object": json.dumps({"id": mark("keyobj"), "email": email("keyobj")}),
                },
            ),
        ):
            assert _attempt(call, DomainName=domain, **params) == "AccessDeniedException"
        record = ctr("leak-key-1", instance=instance, address=email("keyctr"), channel="CHAT")
        post_signed(server, "/contact-records", json.dumps([record]))
        with _signed_in(server, mark("keyagent")) as agent:
            home = _fields(agent.get(f"/agent/domains/{domain}").text)
            agent.post(f"/agent/domains/{domain}", data={**home, "q": email("key")})
            agent.get(f"/agent/domains/{domain}/profiles/{profile}")
        # The key's problem was logged, and so had the chance to leak.
        assert any(
            r.levelno >= logging.WARNING and "key cannot be used" in r.getMessage()
            for r in caplog.records
        )
        logs.assert_none(server)
        keyring.enable(key.key_id)
