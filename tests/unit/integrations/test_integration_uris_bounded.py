"""Uris an integration's columns can hold, on SQLite and PostgreSQL.

A review found these ways past them:

* an instance ARN was any length (its region unbounded): a contact record naming one of more
  than 255 characters was taken for an instance's, and PostgreSQL refused to keep it, failing
  its whole batch (tests/wire/test_integration_uris_bounded_api.py);
* its account's `\\d{12}` took Arabic-Indic digits: PutIntegration stored such an "instance";
* a FlowDefinition without a Uri made the flow's ARN the Uri, too long for a FlowName of more
  than about 211 characters: SQLite stored it (GetIntegration and DeleteIntegration then
  refused it), PostgreSQL failed (500);
* the tags of an integration are stored by its ARN, its Uri percent-encoded whole: a Uri of
  255 characters outside ASCII made one longer than the column's 1,024 (PostgreSQL: 500);
* only `arn:aws:connect:` was known for Amazon Connect's: the queue ARN of an instance in
  aws-cn was stored as an ordinary integration;
* a Uri longer than the model's 255 characters, from the CLI or the pages, was stored (SQLite)
  or failed (PostgreSQL).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from tests.unit.flows.test_flows_templates import flow_definition
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.arns import child_arn
from openprofiles.context import Services
from openprofiles.errors import BadRequest
from openprofiles.integrations.models import is_instance_arn
from openprofiles.integrations.service import (
    delete_integration,
    find_integration,
    get_integration,
    put_integration,
)
from openprofiles.tags.service import get_tags, remove_tags, require_taggable

D = "bounded"
ACCOUNT = "111122223333"
ARABIC_INDIC_ACCOUNT = "١١١١٢٢٢٢٣٣٣٣"
# The longest instance ARN taken: every part at its bound.
LONGEST = f"arn:aws-abcdefgh-abcdefgh:connect:{'r' * 32}:{ACCOUNT}:instance/{'i' * 128}"


def test_the_longest_instance_arn_taken_fits_its_columns() -> None:
    assert is_instance_arn(LONGEST)
    assert len(LONGEST) <= 255


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:connect:{'a' * 150}:{ACCOUNT}:instance/{'b' * 100}",
        f"arn:aws:connect:{'r' * 33}:{ACCOUNT}:instance/abc",
        f"arn:aws:connect:us-east-1:{ACCOUNT}:instance/{'i' * 129}",
        f"arn:aws-abcdefghi:connect:us-east-1:{ACCOUNT}:instance/abc",
        f"arn:aws-a-b-c:connect:us-east-1:{ACCOUNT}:instance/abc",
        f"arn:aws:connect:us-east-1:{ARABIC_INDIC_ACCOUNT}:instance/abc",
        f"arn:aws:connect:us-east-١:{ACCOUNT}:instance/abc",
        f"arn:aws:connect:us-east-1:{ACCOUNT}:instance/abc\n",
    ],
)
def test_an_instance_arn_out_of_bounds_or_not_ascii_is_none(arn: str) -> None:
    assert not is_instance_arn(arn)


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:connect:us-east-1:{ACCOUNT}:instance/1d908e11-3d5f-4cfb-b34d-1e7e0f216898",
        f"arn:aws-cn:connect:cn-north-1:{ACCOUNT}:instance/abc",
        f"arn:aws-us-gov:connect:us-gov-west-1:{ACCOUNT}:instance/abc",
        f"arn:aws-iso-b:connect:us-isob-east-1:{ACCOUNT}:instance/abc",
        f"arn:aws-eusc:connect:eusc-de-east-1:{ACCOUNT}:instance/abc",
    ],
)
def test_the_partitions_instance_arns_are_taken(arn: str) -> None:
    assert is_instance_arn(arn)


def put(
    services: Services,
    uri: str | None,
    flow: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    with services.write() as tx:
        put_integration(
            tx, domain_name=D, uri=uri, object_type_name="CTR", flow_definition=flow, tags=tags
        )


def refused(services: Services, uri: str | None, flow: dict[str, Any] | None = None) -> str:
    with pytest.raises(BadRequest) as caught:
        put(services, uri, flow)
    return caught.value.message


@pytest.mark.parametrize(
    "uri",
    [
        f"arn:aws:connect:us-east-1:{ARABIC_INDIC_ACCOUNT}:instance/abc-1",
        f"arn:aws-cn:connect:cn-north-1:{ACCOUNT}:instance/abc/queue/q",
        f"arn:aws:connect:{'a' * 150}:{ACCOUNT}:instance/{'b' * 50}",
    ],
)
def test_put_integration_refuses_a_connect_arn_that_is_no_instance(
    services: Services, uri: str
) -> None:
    make_domain(services, D)

    assert "is not a contact-centre instance ARN" in refused(services, uri)
    with services.read() as tx:
        assert find_integration(tx, domain_name=D, uri=uri) is None


def test_a_flow_name_too_long_for_its_arn_is_refused_saying_the_limit(
    services: Services,
) -> None:
    make_domain(services, D)
    prefix = f"arn:aws:appflow:{services.settings.region}:{services.settings.account_id}:flow/"
    longest = "f" * (255 - len(prefix))

    put(services, None, flow_definition(longest, "crm-bucket"))
    message = refused(services, None, flow_definition(longest + "f", "crm-bucket"))

    assert "The FlowName is too long for the flow's ARN" in message
    assert f"at most {len(longest)} here ({len(longest) + 1} given)" in message
    with services.read() as tx:
        assert get_integration(tx, domain_name=D, uri=prefix + longest).flow_name == longest


def test_a_uri_outside_ascii_is_tagged_listed_and_untagged(services: Services) -> None:
    make_domain(services, D)
    # 255 characters of 4 bytes: percent-encoded whole, 12 characters each in the ARN.
    uri = "s3://" + "\U0001f600" * 250

    put(services, uri, tags={"team": "care", "cost": "7"})

    settings = services.settings
    for arn in (
        child_arn(settings, D, "integrations", uri),
        child_arn(settings, D, "integrations", quote(uri, safe="")),
    ):
        with services.write() as tx:
            found = require_taggable(tx, resource_arn=arn)
            assert get_tags(tx, resource_arn=found.arn) == {"team": "care", "cost": "7"}
    with services.write() as tx:
        found = require_taggable(tx, resource_arn=child_arn(settings, D, "integrations", uri))
        remove_tags(tx, resource_arn=found.arn, tag_keys=["cost"])
    with services.read() as tx:
        assert get_tags(tx, resource_arn=found.arn) == {"team": "care"}
    with services.write() as tx:
        delete_integration(tx, domain_name=D, uri=uri)
    with services.read() as tx:
        assert get_tags(tx, resource_arn=found.arn) == {}


def test_a_uri_longer_than_the_models_is_refused(services: Services) -> None:
    # The API's callers are held to it by the model; the CLI's and the pages' were not.
    make_domain(services, D)

    assert "at most 255 characters" in refused(services, "s3://" + "x" * 251)
    put(services, "s3://" + "x" * 250)
