"""The dead-letter queue, integrations and instance association pages through Starlette's
TestClient: CSRF refusal, role refusal, confirmation steps, messages at the field, and nothing
changed on error."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient
from tests.unit.ingest.conftest import DOMAIN, crm_type, ingest, make_domain, put_type

from openprofiles.app import create_app
from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.dlq.sinks import dead_letter
from openprofiles.flows import runs as flow_runs
from openprofiles.ingest.pipeline import IngestRejected
from openprofiles.integrations import service as integrations
from openprofiles.object_types.service import delete_object_type
from openprofiles.settings import Settings
from openprofiles.users import service as users

PASSWORD = "long enough password"
INSTANCE = "arn:aws:connect:us-east-1:123456789012:instance/1d908e11-3d5f-4cfb-b34d-1e7e0f216898"
OTHER = "other"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def error_at(html: str, field_id: str) -> str:
    match = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', html)
    assert match, f"no error at {field_id}"
    return match.group(1)


def signed_in(settings: Settings, role: str) -> Iterator[TestClient]:
    app = create_app(settings)
    with app.state.services.write() as tx:
        users.create_user(tx, username=f"{role}1", password=PASSWORD, role=role)
    make_domain(app.state.services)
    make_domain(app.state.services, OTHER)
    with TestClient(app, follow_redirects=False) as client:
        page = client.get("/ui/sign-in")
        client.post(
            "/ui/sign-in",
            data={"username": f"{role}1", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        )
        yield client
    app.state.services.database.dispose()


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "admin")


@pytest.fixture
def agent(settings: Settings) -> Iterator[TestClient]:
    yield from signed_in(settings, "agent")


def services_of(client: TestClient) -> Services:
    return client.app.state.services  # type: ignore[attr-defined,no-any-return]


def reject(services: Services, obj: dict[str, object]) -> str:
    with pytest.raises(IngestRejected) as exc:
        ingest(services, "Crm", obj)
    return dead_letter(
        services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json=json.dumps(obj),
        reason=exc.value.reason,
        category=exc.value.category,
    ).message_id


def count(services: Services) -> int:
    with services.read() as tx:
        return dlq.count(tx, domain_name=DOMAIN)


@pytest.fixture
def letters(admin: TestClient) -> list[str]:
    services = services_of(admin)
    put_type(services, "Crm", crm_type(AllowProfileCreation=False))
    return [
        reject(services, {"id": "1", "email": "a@x.com", "first": "<script>alert(1)</script>"}),
        reject(services, {"id": "2", "email": "b@x.com"}),
    ]


def test_dlq_list_and_message(admin: TestClient, letters: list[str]) -> None:
    page = admin.get(f"/admin/domains/{DOMAIN}/dlq")
    assert page.status_code == 200
    assert "2 records waiting" in page.text
    assert "no_profile" in page.text and "No queue (kept here only)" in page.text
    assert all(m in page.text for m in letters)
    overview = admin.get("/admin/dlq")
    assert f'href="/admin/domains/{DOMAIN}/dlq"' in overview.text
    one = admin.get(f"/admin/domains/{DOMAIN}/dlq/{letters[0]}")
    assert one.status_code == 200
    # Pretty-printed and escaped.
    assert "&#34;first&#34;: &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;," in one.text
    assert "<script>alert" not in one.text
    assert admin.get(f"/admin/domains/{DOMAIN}/dlq/nope").status_code == 404
    assert admin.get("/admin/domains/ghost/dlq").status_code == 404


def test_a_letter_retry_cannot_ingest_says_what_to_do_instead(admin: TestClient) -> None:
    services = services_of(admin)
    put_type(services, "Crm", crm_type())
    why = "The file could not be read as records: fix it in its source, then run the flow."
    letter = dead_letter(
        services,
        domain_name=DOMAIN,
        object_type_name="Crm",
        object_json="not json at all",
        reason="The item is not JSON.",
        category="invalid_value",
        not_retryable=why,
    ).message_id
    page = admin.get(f"/admin/domains/{DOMAIN}/dlq/{letter}")
    assert why in page.text and "Retry record" not in page.text and "Purge" in page.text
    token = csrf_of(page.text)
    # A retry posted anyway (an old page) is answered with why, not "failed again".
    still = admin.post(f"/admin/domains/{DOMAIN}/dlq/{letter}/retry", data={"csrf_token": token})
    shown = admin.get(still.headers["location"]).text
    assert f"Not retried: {why}" in shown and "The retry failed again" not in shown


def test_dlq_retry_one_and_all(admin: TestClient, letters: list[str]) -> None:
    services = services_of(admin)
    token = csrf_of(admin.get(f"/admin/domains/{DOMAIN}/dlq").text)
    still = admin.post(
        f"/admin/domains/{DOMAIN}/dlq/{letters[0]}/retry", data={"csrf_token": token}
    )
    assert still.headers["location"] == f"/admin/domains/{DOMAIN}/dlq/{letters[0]}"
    failed = admin.get(still.headers["location"])
    assert "The retry failed again" in failed.text
    with services.read() as tx:
        assert dlq.get(tx, domain_name=DOMAIN, message_id=letters[0]).attempts == 2

    put_type(services, "Crm", crm_type(AllowProfileCreation=True))
    done = admin.post(f"/admin/domains/{DOMAIN}/dlq/{letters[0]}/retry", data={"csrf_token": token})
    assert done.status_code == 303
    assert "Retried: 1 applied, 0 still failing" in admin.get(done.headers["location"]).text
    assert count(services) == 1
    done = admin.post(f"/admin/domains/{DOMAIN}/dlq/retry", data={"csrf_token": token})
    assert "Retried: 1 applied, 0 still failing" in admin.get(done.headers["location"]).text
    assert count(services) == 0


def test_dlq_purge_needs_confirmation(admin: TestClient, letters: list[str]) -> None:
    services = services_of(admin)
    token = csrf_of(admin.get(f"/admin/domains/{DOMAIN}/dlq").text)
    confirm = admin.get(f"/admin/domains/{DOMAIN}/dlq/{letters[0]}/purge")
    assert confirm.status_code == 200 and "Purge this record" in confirm.text
    refused = admin.post(
        f"/admin/domains/{DOMAIN}/dlq/{letters[0]}/purge", data={"csrf_token": token}
    )
    assert refused.status_code == 400
    assert "Tick the box" in error_at(refused.text, "confirm")
    assert count(services) == 2
    done = admin.post(
        f"/admin/domains/{DOMAIN}/dlq/{letters[0]}/purge",
        data={"csrf_token": token, "confirm": "yes"},
    )
    assert done.status_code == 303
    assert "Purged 1 record." in admin.get(done.headers["location"]).text
    assert count(services) == 1
    # Purged already (by another admin): the page says none was, not "Purged 1 record".
    again = admin.post(
        f"/admin/domains/{DOMAIN}/dlq/{letters[0]}/purge",
        data={"csrf_token": token, "confirm": "yes"},
    )
    assert "Purged 0 records." in admin.get(again.headers["location"]).text

    asked = admin.get(f"/admin/domains/{DOMAIN}/dlq/purge").text
    assert "Delete all 1 records" in asked
    refused = admin.post(
        f"/admin/domains/{DOMAIN}/dlq/purge", data={"csrf_token": token, **counted_of(asked)}
    )
    assert refused.status_code == 400 and "Tick the box" in error_at(refused.text, "confirm")
    assert count(services) == 1
    done = admin.post(
        f"/admin/domains/{DOMAIN}/dlq/purge",
        data={"csrf_token": token, "confirm": "yes", **counted_of(refused.text)},
    )
    assert "Purged 1 record." in admin.get(done.headers["location"]).text
    assert count(services) == 0


def counted_of(html: str) -> dict[str, str]:
    """The count a "Purge all" confirmation page carries in its form."""
    match = re.search(r'name="counted" value="([^"]+)"', html)
    assert match
    return {"counted": match.group(1)}


def hidden_fields(html: str) -> dict[str, str]:
    """What a page's forms carry hidden, as a browser posts it."""
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def purge_all(admin: TestClient, confirmed: str, **fields: str) -> tuple[int, str]:
    """POST the "Purge all" confirmation page `confirmed`, ticked, with `fields` over its own;
    (status, what the page it leads to says)."""
    data = {**hidden_fields(confirmed), "confirm": "yes", **fields}
    response = admin.post(f"/admin/domains/{DOMAIN}/dlq/purge", data=data)
    if response.status_code != 303:
        return response.status_code, response.text
    return response.status_code, admin.get(response.headers["location"]).text


def test_purge_all_keeps_what_was_dead_lettered_after_the_count(
    admin: TestClient, letters: list[str]
) -> None:
    services = services_of(admin)
    confirmed = admin.get(f"/admin/domains/{DOMAIN}/dlq/purge").text
    assert "Delete all 2 records" in confirmed
    # Dead-lettered while the admin reads the page: not among the 2 confirmed.
    arrived = reject(services, {"id": "3", "email": "c@x.com"})
    status, shown = purge_all(admin, confirmed)
    assert status == 303 and "Purged 2 records." in shown
    with services.read() as tx:
        assert dlq.letter_ids(tx, domain_name=DOMAIN) == [arrived]


def test_purge_all_says_how_many_it_purged_when_some_went_meanwhile(
    admin: TestClient, letters: list[str]
) -> None:
    services = services_of(admin)
    confirmed = admin.get(f"/admin/domains/{DOMAIN}/dlq/purge").text
    with services.write() as tx:
        dlq.purge(tx, domain_name=DOMAIN, message_ids=[letters[0]])  # another admin's
    status, shown = purge_all(admin, confirmed)
    assert status == 303 and "Purged 1 record." in shown
    assert count(services) == 0


def test_purge_all_refuses_a_record_committed_among_those_counted(
    admin: TestClient, letters: list[str]
) -> None:
    """A record whose id was taken before the count but whose transaction committed after it
    sorts among those counted: it is not purged unseen, and the admin is asked again."""
    services = services_of(admin)
    confirmed = admin.get(f"/admin/domains/{DOMAIN}/dlq/purge").text
    with services.write() as tx:
        dlq.put(
            tx,
            domain_name=DOMAIN,
            object_type_name="Crm",
            object_json="{}",
            reason="late",
            category="no_profile",
            message_id="0" * 32,
        )
    status, shown = purge_all(admin, confirmed)
    assert status == 409 and "Nothing was purged" in shown and "Delete all 3 records" in shown
    assert count(services) == 3
    status, shown = purge_all(admin, shown)
    assert status == 303 and "Purged 3 records." in shown
    assert count(services) == 0


@pytest.mark.parametrize("counted", ["", "1" + "A" * 60, "not a count"])
def test_purge_all_refuses_a_changed_count(
    admin: TestClient, letters: list[str], counted: str
) -> None:
    confirmed = admin.get(f"/admin/domains/{DOMAIN}/dlq/purge").text
    status, shown = purge_all(admin, confirmed, counted=counted)
    assert status == 400 and "Nothing was purged" in shown
    assert count(services_of(admin)) == 2


def test_purge_all_refuses_another_domains_count(admin: TestClient, letters: list[str]) -> None:
    services = services_of(admin)
    other = admin.get(f"/admin/domains/{OTHER}/dlq/purge").text
    status, shown = purge_all(
        admin, admin.get(f"/admin/domains/{DOMAIN}/dlq/purge").text, **counted_of(other)
    )
    assert status == 400 and "Nothing was purged" in shown
    assert count(services) == 2


def test_forms_without_the_csrf_token_change_nothing(admin: TestClient, letters: list[str]) -> None:
    services = services_of(admin)
    for path, data in [
        (f"/admin/domains/{DOMAIN}/dlq/purge", {"confirm": "yes"}),
        (f"/admin/domains/{DOMAIN}/dlq/{letters[0]}/purge", {"confirm": "yes"}),
        (f"/admin/domains/{DOMAIN}/dlq/retry", {}),
        ("/admin/instances", {"instance_arn": INSTANCE, "domain_name": DOMAIN}),
        (f"/admin/domains/{DOMAIN}/integrations/delete", {"uri": INSTANCE, "confirm": "yes"}),
    ]:
        for token in (None, "forged"):
            sent = {**data, "csrf_token": token} if token else data
            response = admin.post(path, data=sent)
            assert response.status_code == 403, path
            assert "This form has expired" in response.text
    assert count(services) == 2
    with services.read() as tx:
        assert integrations.list_instances(tx) == []
        assert dlq.get(tx, domain_name=DOMAIN, message_id=letters[0]).attempts == 1


def test_agents_are_refused(agent: TestClient) -> None:
    for path in (
        "/admin/dlq",
        f"/admin/domains/{DOMAIN}/dlq",
        "/admin/integrations",
        f"/admin/domains/{DOMAIN}/integrations",
        "/admin/instances",
    ):
        response = agent.get(path)
        assert response.status_code == 403, path
        assert "Not available to agents" in response.text
    token = csrf_of(agent.get("/agent/").text)
    response = agent.post(
        "/admin/instances",
        data={"csrf_token": token, "instance_arn": INSTANCE, "domain_name": DOMAIN},
    )
    assert response.status_code == 403
    with services_of(agent).read() as tx:
        assert integrations.list_instances(tx) == []


def associate(client: TestClient, **fields: str) -> tuple[int, str]:
    token = csrf_of(client.get("/admin/instances").text)
    response = client.post("/admin/instances", data={"csrf_token": token, **fields})
    return response.status_code, response.text


def owner(client: TestClient) -> str | None:
    with services_of(client).read() as tx:
        return integrations.instance_domain(tx, instance_arn=INSTANCE)


@pytest.mark.parametrize(
    ("fields", "field_id", "message"),
    [
        (
            {"instance_arn": "arn:aws:connect:nope", "domain_name": DOMAIN},
            "instance_arn",
            "such as",
        ),
        ({"instance_arn": "", "domain_name": DOMAIN}, "instance_arn", "Enter the instance ARN"),
        ({"instance_arn": INSTANCE, "domain_name": ""}, "domain_name", "Choose the domain"),
        ({"instance_arn": INSTANCE, "domain_name": "ghost"}, "domain_name", "listed domains"),
    ],
)
def test_instance_errors_at_the_field(
    admin: TestClient, fields: dict[str, str], field_id: str, message: str
) -> None:
    status, html = associate(admin, **fields)
    assert status == 400
    assert message in error_at(html, field_id)
    assert f'value="{fields["instance_arn"]}"' in html
    assert owner(admin) is None


def test_instance_associate_and_move(admin: TestClient) -> None:
    status, html = associate(admin, instance_arn=INSTANCE, domain_name=DOMAIN)
    assert status == 200 and "Instance associated" in html
    assert owner(admin) == DOMAIN
    listing = admin.get("/admin/instances").text
    assert INSTANCE in listing and "Change the domain" in listing

    # Associated elsewhere and the move box not ticked: refused at the box, nothing changed.
    status, html = associate(admin, instance_arn=INSTANCE, domain_name=OTHER)
    assert status == 400
    assert f"associated with domain {DOMAIN} now" in error_at(html, "move")
    assert owner(admin) == DOMAIN

    status, html = associate(admin, instance_arn=INSTANCE, domain_name=OTHER, move="yes")
    assert status == 200
    assert f"It was moved from <strong>{DOMAIN}</strong>" in html
    assert f"history stay in {DOMAIN}" in " ".join(html.split())
    assert owner(admin) == OTHER
    prefilled = admin.get("/admin/instances", params={"instance": INSTANCE}).text
    assert 'name="move" value="yes" checked' in prefilled


def test_integrations_list_run_now_and_delete(admin: TestClient) -> None:
    services = services_of(admin)
    put_type(services, "Crm", crm_type(AllowProfileCreation=True))
    # DATA_DIR/flows: the folder flows may read by default.
    folder = services.settings.data_dir / "flows"
    folder.mkdir(parents=True)
    (folder / "customers.json").write_text(
        json.dumps([{"id": "7", "email": "f@x.com", "first": "Flo"}])
    )
    with services.write() as tx:
        integrations.associate_instance(tx, domain_name=DOMAIN, instance_arn=INSTANCE, move=False)
        integrations.put_integration(
            tx,
            domain_name=DOMAIN,
            uri=None,
            object_type_name="Crm",
            flow_definition={
                "FlowName": "crm-export",
                "KmsArn": "arn:aws:kms:us-east-1:123456789012:key/k",
                "SourceFlowConfig": {
                    "ConnectorType": "S3",
                    "SourceConnectorProperties": {
                        "S3": {"BucketName": "file://", "BucketPrefix": str(folder)}
                    },
                },
                "Tasks": [],
                "TriggerConfig": {"TriggerType": "OnDemand"},
            },
        )
    page = admin.get(f"/admin/domains/{DOMAIN}/integrations")
    assert page.status_code == 200
    assert INSTANCE in page.text and "crm-export" in page.text
    assert "OnDemand" in page.text and "never run" in page.text
    token = csrf_of(page.text)

    ran = admin.post(
        f"/admin/domains/{DOMAIN}/integrations/run",
        data={"csrf_token": token, "flow_name": "crm-export"},
    )
    assert ran.status_code == 303
    shown = admin.get(ran.headers["location"]).text
    assert "Flow crm-export: COMPLETED" in shown
    with services.read() as tx:
        runs = flow_runs.list_runs(tx, domain_name=DOMAIN, flow_name="crm-export")
    assert [r.records_ingested for r in runs] == [1]
    missing = admin.post(
        f"/admin/domains/{DOMAIN}/integrations/run",
        data={"csrf_token": token, "flow_name": "ghost"},
    )
    assert missing.status_code == 404

    confirm = admin.get(f"/admin/domains/{DOMAIN}/integrations/delete", params={"uri": INSTANCE})
    assert confirm.status_code == 200 and "stay" in confirm.text
    refused = admin.post(
        f"/admin/domains/{DOMAIN}/integrations/delete", data={"csrf_token": token, "uri": INSTANCE}
    )
    assert refused.status_code == 400 and "Tick the box" in error_at(refused.text, "confirm")
    assert owner(admin) == DOMAIN
    done = admin.post(
        f"/admin/domains/{DOMAIN}/integrations/delete",
        data={"csrf_token": token, "uri": INSTANCE, "confirm": "yes"},
    )
    assert done.status_code == 303
    assert owner(admin) is None
    assert "Deleted the integration" in admin.get(done.headers["location"]).text


def test_integrations_disabled_by_a_deleted_type_show_it_with_the_reason(
    admin: TestClient,
) -> None:
    # DeleteProfileObjectType disables the integrations ingesting as the type; the API has no
    # member for it, so the admin pages are where an operator sees it (with the reason, escaped).
    services = services_of(admin)
    put_type(services, "Crm", crm_type(AllowProfileCreation=True))
    with services.write() as tx:
        integrations.associate_instance(tx, domain_name=DOMAIN, instance_arn=INSTANCE, move=False)
        integrations.put_integration(
            tx, domain_name=DOMAIN, uri="<b>crm</b>", object_type_name="Crm"
        )
    before = admin.get(f"/admin/domains/{DOMAIN}/integrations").text
    assert "Disabled" not in before
    assert "Disabled" not in admin.get("/admin/instances").text
    assert "Disabled" not in admin.get(f"/admin/domains/{DOMAIN}").text
    with services.write() as tx:
        delete_object_type(tx, domain_name=DOMAIN, name="CTR")
        delete_object_type(tx, domain_name=DOMAIN, name="Crm")

    listing = admin.get(f"/admin/domains/{DOMAIN}/integrations").text
    assert listing.count("Disabled") == 2
    assert "its object type CTR was deleted" in listing
    assert "its object type Crm was deleted" in listing
    assert "&lt;b&gt;crm&lt;/b&gt;" in listing and "<b>crm</b>" not in listing
    instances = admin.get("/admin/instances").text
    assert "Disabled" in instances and "its object type CTR was deleted" in instances
    domain = admin.get(f"/admin/domains/{DOMAIN}").text
    assert "2 integrations are disabled" in domain
    assert f'href="/admin/domains/{DOMAIN}/integrations"' in domain
    assert "<b>crm</b>" not in domain

    # Defining the type again enables its integrations: the status goes back to normal.
    put_type(services, "Crm", crm_type(AllowProfileCreation=True))
    listing = admin.get(f"/admin/domains/{DOMAIN}/integrations").text
    assert listing.count("Disabled") == 1 and "its object type Crm was deleted" not in listing
    assert "1 integration is disabled" in admin.get(f"/admin/domains/{DOMAIN}").text
