"""Defects a review of the agent and admin pages found, through Starlette's TestClient: entries
the enable wizard ignored, the sign-in page losing where to return after a mistyped password,
attributes the edit form could not carry, profile values the page did not show, the wizard's
last page trusting its address, the focus and error summaries after a refused form, and empty
address lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.unit.ui.test_ui_admin_ops import (
    DOMAIN,
    INSTANCE,
    OTHER,
    PASSWORD,
    csrf_of,
    error_at,
    services_of,
    signed_in,
)
from tests.unit.ui.test_ui_pages import _FormFields

from openprofiles.app import create_app
from openprofiles.crypto.keyring import Keyring
from openprofiles.domains import service as domains
from openprofiles.profiles import service as profiles
from openprofiles.settings import Settings
from openprofiles.ui import profile_form as pf
from openprofiles.users import service as users

KMS_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/profiles-dlq"
UI_DIR = Path(pf.__file__).parent
CSS = UI_DIR / "static" / "ui.css"


@pytest.fixture
def admin(sqlite_settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(sqlite_settings, "admin")


def wizard(client: TestClient, **fields: str) -> tuple[int, str]:
    data = {
        "csrf_token": csrf_of(client.get("/admin/enable").text),
        "domain_choice": "new",
        "domain_name": "acme",
        "retention_days": "366",
        "dlq_choice": "none",
        "key_choice": "default",
        "action": "submit",
        **fields,
    }
    response = client.post("/admin/enable", data=data)
    return response.status_code, response.text


def domain_names(client: TestClient) -> set[str]:
    with services_of(client).read() as tx:
        return {d.name for d in domains.list_domains(tx, after=None, limit=100)[0]}


def make_profile(client: TestClient, **fields: Any) -> str:
    with services_of(client).write() as tx:
        return profiles.create_profile(tx, domain_name=DOMAIN, fields=fields).profile_id


def stored_fields(client: TestClient, profile_id: str) -> dict[str, Any]:
    with services_of(client).read() as tx:
        return profiles.get_profile(tx, domain_name=DOMAIN, profile_id=profile_id).fields


def profile_page(client: TestClient, profile_id: str) -> str:
    response = client.get(f"/agent/domains/{DOMAIN}/profiles/{profile_id}")
    assert response.status_code == 200
    return response.text


# ------------------------------------------------- 1. entries the wizard's choices ignore


@pytest.mark.parametrize(
    ("fields", "field_id", "message"),
    [
        (
            {"kms_arn": KMS_ARN},
            "kms_arn",
            "You entered a KMS key ARN but chose the server&#39;s default key: choose "
            "&#39;Use an AWS KMS key&#39; to use it, or clear the field.",
        ),
        (
            {"key_choice": "new_local", "new_key_alias": "acme-k", "kms_arn": KMS_ARN},
            "kms_arn",
            "You entered a KMS key ARN but chose a new local key",
        ),
        (
            {"dlq_url": QUEUE_URL},
            "dlq_url",
            "You entered an SQS queue URL but chose &#39;No queue&#39;",
        ),
        ({"new_key_alias": "acme-k"}, "new_key_alias", "You entered an alias for a new key"),
    ],
)
def test_an_entry_the_chosen_option_does_not_use_is_refused_not_ignored(
    admin: TestClient,
    sqlite_settings: Settings,
    fields: dict[str, str],
    field_id: str,
    message: str,
) -> None:
    """The domain used to be created under the server's local key (or with no queue) without a
    word about the KMS key ARN (queue URL) the admin had typed."""
    status, html = wizard(admin, **fields)

    assert status == 400
    assert message in error_at(html, field_id)
    assert "acme" not in domain_names(admin)
    assert Keyring(sqlite_settings.keyring_path).find_by_alias("acme-k") is None


def test_the_entry_is_used_once_its_option_is_chosen(admin: TestClient) -> None:
    # An alias for a new key with 'Create a new local key' chosen: the key is made and used.
    status, _ = wizard(admin, key_choice="new_local", new_key_alias="acme-k")
    assert status == 303 and "acme" in domain_names(admin)


# ------------------------------------------------- 2. sign-in keeps where to go next


def hidden(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', html)
    assert match, f"no hidden {name}"
    return match.group(1)


@pytest.fixture
def signed_out(sqlite_settings: Settings) -> Iterator[TestClient]:
    app = create_app(sqlite_settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username="ada", password=PASSWORD, role="agent")
    with TestClient(app, follow_redirects=False) as client:
        yield client
    app.state.services.database.dispose()


def sign_in_from(client: TestClient, html: str, password: str) -> Any:
    return client.post(
        "/ui/sign-in",
        data={
            "csrf_token": csrf_of(html),
            "next": hidden(html, "next"),
            "next_query": hidden(html, "next_query"),
            "username": "ada",
            "password": password,
        },
    )


def test_a_mistyped_password_keeps_the_screen_pop_address(signed_out: TestClient) -> None:
    """The failed POST re-showed the form with `next` read from its own address, which has no
    query: the agent then landed on /agent/ instead of the contact's screen pop."""
    page = signed_out.get("/ui/sign-in", params={"next": "/agent/contacts/live-ada-1"}).text

    failed = sign_in_from(signed_out, page, "wrong password")
    assert failed.status_code == 401
    assert hidden(failed.text, "next") == "/agent/contacts/live-ada-1"

    signed = sign_in_from(signed_out, failed.text, PASSWORD)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/agent/contacts/live-ada-1"


def test_a_mistyped_password_keeps_the_sealed_query_too(signed_out: TestClient) -> None:
    target = signed_out.get("/admin/users?notice=x")
    assert target.status_code == 303
    page = signed_out.get(target.headers["location"]).text
    assert hidden(page, "next_query")

    failed = sign_in_from(signed_out, page, "wrong password")
    assert hidden(failed.text, "next_query") == hidden(page, "next_query")
    signed = sign_in_from(signed_out, failed.text, PASSWORD)
    assert signed.headers["location"] == "/admin/users?notice=x"


def test_a_next_that_is_not_a_local_path_is_not_carried(signed_out: TestClient) -> None:
    page = signed_out.get("/ui/sign-in", params={"next": "//evil.example/x"}).text
    assert hidden(page, "next") == ""
    failed = signed_out.post(
        "/ui/sign-in",
        data={
            "csrf_token": csrf_of(page),
            "next": "https://evil.example/",
            "username": "ada",
            "password": "wrong password",
        },
    )
    assert hidden(failed.text, "next") == ""


# ------------------------------------------------- 3. attributes through the edit form

AWKWARD = {
    "utm=source": "mail",
    "notes": "line one\nline two",
    "path": "C:\\temp\\new",
    "a\\": "b = c",
    " padded ": "  both ends  ",
    "separators": "x\u2028y\rz\x85w",
    "tab": "a\tb",
    "looks escaped": "\\n and \\u0041 and \\=",
}


def test_every_stored_attribute_goes_through_the_text_form_unchanged() -> None:
    text = pf.format_attributes(AWKWARD)
    assert len(text.splitlines()) == len(AWKWARD)
    assert pf.parse_attributes(text) == (AWKWARD, None)
    # As a browser sends the text area back: CRLF line breaks, trimmed.
    assert pf.parse_attributes(f"  {text.replace(chr(10), chr(13) + chr(10))}\r\n ") == (
        AWKWARD,
        None,
    )


def test_the_escapes_are_the_documented_ones() -> None:
    assert pf.format_attributes({"a=b": "x\ny\\z"}) == "a\\=b = x\\ny\\\\z"
    # Typed by an agent: a backslash before anything else is kept as typed.
    assert pf.parse_attributes("path = C:\\Users\\ada") == ({"path": "C:\\Users\\ada"}, None)
    assert pf.parse_attributes("note = one\\ntwo") == ({"note": "one\ntwo"}, None)
    assert "\\n" in pf.ATTRIBUTES_HINT and "\\=" in pf.ATTRIBUTES_HINT


def test_an_unchanged_attribute_is_never_a_conflict() -> None:
    """A stored value with a line break (or a name with "=") made the shown text unreadable:
    "before" was {}, so every attribute looked changed and conflicted forever."""
    current = {"FirstName": "Ada", "Attributes": AWKWARD}
    shown = pf.values_from_profile(current)
    assert pf.update_changes(current, shown, shown) == ({}, {})
    added = {**shown, "Attributes": shown["Attributes"] + "\ntier = gold"}
    assert pf.validate(added, "US", only={"Attributes"}) == {}
    assert pf.update_changes(current, shown, added) == ({"Attributes": {"tier": "gold"}}, {})
    lines = shown["Attributes"].splitlines()
    removed = {**shown, "Attributes": "\n".join(line for line in lines if "line two" not in line)}
    assert pf.update_changes(current, shown, removed) == ({"Attributes": {"notes": ""}}, {})


def test_the_edit_form_saves_next_to_an_attribute_with_a_line_break(admin: TestClient) -> None:
    stored = {"notes": "line one\nline two", "utm=source": "mail"}
    profile_id = make_profile(admin, FirstName="Ada", Attributes=stored)
    url = f"/agent/domains/{DOMAIN}/profiles/{profile_id}/edit"
    form = _FormFields()
    form.feed(admin.get(url).text)

    sent = {**form.fields, "Attributes": form.fields["Attributes"] + "\r\ntier = gold"}
    response = admin.post(url, data=sent)

    assert response.status_code == 303, error_at(response.text, "Attributes")
    assert stored_fields(admin, profile_id)["Attributes"] == {**stored, "tier": "gold"}
    # The page shows the value's line break (white-space: pre-line on class "lines").
    assert '<dd dir="auto" class="lines">line one\nline two</dd>' in profile_page(admin, profile_id)


# ------------------------------------------------- 4. values the profile page did not show


def test_the_profile_page_shows_the_free_text_gender_party_type_profile_type_and_preferences(
    admin: TestClient,
) -> None:
    profile_id = make_profile(
        admin,
        FirstName="Ada",
        Gender="UNSPECIFIED",
        GenderString="Non-binary",
        PartyType="OTHER",
        PartyTypeString="Family trust",
        ProfileType="PROFILE",
        EngagementPreferences={
            "Phone": [{"KeyName": "PhoneNumber", "KeyValue": "+12065550100"}],
            "Email": [{"KeyName": "EmailAddress", "KeyValue": "ada@example.com"}],
        },
    )
    html = profile_page(admin, profile_id)

    assert '<dt>Gender</dt><dd dir="auto">Non-binary</dd>' in html
    assert '<dt>Party type</dt><dd dir="auto">Family trust</dd>' in html
    assert '<dt>Profile type</dt><dd dir="auto">PROFILE</dd>' in html
    assert "<h2>Engagement preferences</h2>" in html
    assert '<dt>Phone</dt><dd dir="auto" class="lines">+12065550100 (PhoneNumber)</dd>' in html
    assert '<dt>Email</dt><dd dir="auto" class="lines">ada@example.com (EmailAddress)</dd>' in html
    assert "UNSPECIFIED" not in html and ">OTHER<" not in html


def test_a_gender_code_alone_is_shown_by_its_label(admin: TestClient) -> None:
    profile_id = make_profile(admin, FirstName="Ada", Gender="FEMALE")
    assert '<dt>Gender</dt><dd dir="auto">Female</dd>' in profile_page(admin, profile_id)


# ------------------------------------------------- 5. the wizard's last page


def test_the_done_page_shows_the_stored_association_not_the_address(admin: TestClient) -> None:
    url = f"/admin/enable/{OTHER}/instance"
    response = admin.post(
        url, data={"csrf_token": csrf_of(admin.get(url).text), "instance_arn": INSTANCE}
    )
    assert response.status_code == 303

    done = admin.get(f"/admin/enable/{OTHER}/done").text
    assert f"<code>{INSTANCE}</code>" in done and "Not associated" not in done
    # Another domain's page with the instance in its address: not associated, and says so.
    forged = admin.get(f"/admin/enable/{DOMAIN}/done", params={"instance": INSTANCE}).text
    assert "Not associated" in forged and INSTANCE not in forged


# ------------------------------------------------- 6. long values and wide tables


def test_every_table_scrolls_in_its_own_box_and_long_words_wrap() -> None:
    templates = UI_DIR / "templates"
    for template in templates.rglob("*.html"):
        text = template.read_text()
        assert text.count("<table") == text.count('<div class="table-wrap"><table'), template
    css = CSS.read_text()
    assert ".table-wrap { overflow-x: auto;" in css
    wrapped = re.findall(r"\n([^{\n]*)\{ overflow-wrap: anywhere; \}", css)
    selectors = {s.strip() for rule in wrapped for s in rule.split(",")}
    # Not table cells: breaking anywhere squeezed every column to one letter on a narrow window
    # (test_browser_narrow_tables); a wide table scrolls in its box instead.
    assert {"h1", "dd"} <= selectors


# ------------------------------------------------- 7. focus, error summaries, maxlength


def autofocused(html: str) -> list[str]:
    return re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"[^>]*\sautofocus\b', html)


def summary_links(html: str) -> list[str]:
    summary = re.search(r'<div class="alert error" role="alert">(.*?)</div>', html, re.S)
    assert summary, "no error summary"
    return re.findall(r'<a href="#([^"]+)">', summary[1])


def test_a_refused_wizard_focuses_its_first_invalid_field_and_links_every_error(
    admin: TestClient,
) -> None:
    status, html = wizard(admin, domain_name="a b", retention_days="0", kms_arn="x")
    assert status == 400
    assert autofocused(html) == ["domain_name"]
    assert summary_links(html) == ["domain_name", "retention_days", "kms_arn"]
    # A radio group's error links to (and focuses) its first option.
    status, html = wizard(admin, key_choice="bogus")
    assert summary_links(html) == ["key_choice"]
    assert autofocused(html) == ["key_choice"]
    assert 'type="radio" id="key_choice"' in html


def test_a_refused_profile_form_focuses_its_first_invalid_field(admin: TestClient) -> None:
    page = admin.get(f"/agent/domains/{DOMAIN}/profiles/new").text
    response = admin.post(
        f"/agent/domains/{DOMAIN}/profiles/new",
        data={"csrf_token": csrf_of(page), "Address.City": "x" * 256, "EmailAddress": "bad"},
    )
    assert response.status_code == 400
    # In the page's order, whatever order the checks found them in.
    assert summary_links(response.text) == ["EmailAddress", "Address.City"]
    assert autofocused(response.text) == ["EmailAddress"]
    assert "Email address: Enter an email address" in response.text


_CONFIRMED = {"new_password_confirm": "a new password"}


@pytest.mark.parametrize(
    ("url", "fields", "first"),
    [
        ("/admin/users", {"username": "bad name!", "role": "agent"}, "username"),
        ("/ui/password", {"new_password": "short"}, "new_password"),
        (
            "/ui/password",
            {"current_password": "wrong", "new_password": "a new password", **_CONFIRMED},
            "current_password",
        ),
        (f"/admin/enable/{OTHER}/instance", {"instance_arn": "nope"}, "instance_arn"),
    ],
)
def test_forms_that_had_no_error_summary_have_one(
    admin: TestClient, url: str, fields: dict[str, str], first: str
) -> None:
    page = admin.get(url)
    response = admin.post(url, data={"csrf_token": csrf_of(page.text), **fields})
    assert response.status_code == 400
    assert summary_links(response.text)[0] == first
    assert autofocused(response.text) == [first]


def test_the_user_page_has_an_error_summary(admin: TestClient) -> None:
    page = admin.get("/admin/users")
    ref = re.search(r'href="/admin/users/([^"/]+)"', page.text)
    assert ref
    response = admin.post(
        f"/admin/users/{ref[1]}/password",
        data={"csrf_token": csrf_of(page.text), "new_password": "short"},
    )
    assert response.status_code == 400
    assert summary_links(response.text)[0] == "new_password"
    assert autofocused(response.text) == ["new_password"]


def test_text_inputs_have_their_maxlength(admin: TestClient) -> None:
    html = admin.get("/admin/enable").text
    assert re.search(r'id="kms_arn"[^>]* maxlength="255"', html)
    assert re.search(r'id="domain_name"[^>]* maxlength="64"', html)
    form = admin.get(f"/agent/domains/{DOMAIN}/profiles/new").text
    assert re.search(r'id="FirstName"[^>]* maxlength="255"', form)
    # Passwords may be 1024 characters (2048 UTF-16 units, as the browser counts).
    assert re.search(r'id="current_password"[^>]* maxlength="2048"', admin.get("/ui/password").text)


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_focus_ring_has_at_least_3_to_1_contrast() -> None:
    css = CSS.read_text()
    focus = re.search(r"--focus: (#[0-9a-fA-F]{6});", css)
    background = re.search(r"--bg: (#[0-9a-fA-F]{6});", css)
    header = re.search(r"\.top \{[^}]*background: (#[0-9a-fA-F]{6});", css)
    assert focus and background and header
    # Panels (white), the page and the top bar, where the sign-out controls are.
    for behind in ("#ffffff", background[1], header[1]):
        assert _contrast(focus[1], behind) >= 3, behind


# ------------------------------------------------- 8. address lines


def address_lines(html: str) -> list[str]:
    block = re.search(r"<address>(.*?)</address>", html, re.S)
    assert block
    # Each line isolated (<bdi>) for right-to-left values.
    return [re.sub(r"</?bdi>", "", line).strip() for line in block[1].split("<br>")]


def test_an_address_without_postal_code_or_city_has_no_empty_line(admin: TestClient) -> None:
    profile_id = make_profile(
        admin, FirstName="Ada", Address={"Address1": "1 Main Street", "Country": "FR"}
    )
    assert address_lines(profile_page(admin, profile_id)) == ["1 Main Street", "FR"]
    profile_id = make_profile(
        admin,
        FirstName="Bea",
        Address={"Address1": "2 Quai", "PostalCode": "69001", "City": "Lyon", "Country": "FR"},
    )
    assert address_lines(profile_page(admin, profile_id)) == ["2 Quai", "69001 Lyon", "FR"]
