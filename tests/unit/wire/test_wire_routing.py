"""Route table: method matters, literals beat labels, labels are decoded after splitting."""

from __future__ import annotations

import pytest
from tests.unit.wire.synthetic import SYNTHETIC

from openprofiles.wire.model import load_service_model
from openprofiles.wire.routing import Router

ROUTER = Router(load_service_model())


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("PUT", "/domains/d/integrations", ("PutIntegration", {"DomainName": "d"})),
        ("POST", "/domains/d/integrations", ("GetIntegration", {"DomainName": "d"})),
        ("GET", "/domains/d/integrations", ("ListIntegrations", {"DomainName": "d"})),
        ("POST", "/domains/d/profiles/keys/delete", ("DeleteProfileKey", {"DomainName": "d"})),
        ("POST", "/domains/d/profiles/keys", ("AddProfileKey", {"DomainName": "d"})),
        ("POST", "/domains/d/profiles/objects/merge", ("MergeProfiles", {"DomainName": "d"})),
        ("POST", "/domains/d/profiles/objects", ("ListProfileObjects", {"DomainName": "d"})),
        ("GET", "/domains", ("ListDomains", {})),
        ("GET", "/domains/my-domain/", ("GetDomain", {"DomainName": "my-domain"})),
        ("get", "/templates/t1", ("GetProfileObjectTypeTemplate", {"TemplateId": "t1"})),
        (
            "POST",
            "/tags/arn%3Aaws%3Aprofile%3Aus-east-1%3A000000000000%3Adomains%2Fname",
            ("TagResource", {"resourceArn": "arn:aws:profile:us-east-1:000000000000:domains/name"}),
        ),
        (
            "GET",
            "/domains/d/profiles/p%20q/history-records/h",
            ("GetProfileHistoryRecord", {"DomainName": "d", "ProfileId": "p q", "Id": "h"}),
        ),
    ],
)
def test_match(method: str, path: str, expected: tuple[str, dict[str, str]]) -> None:
    assert ROUTER.match(method, path) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/domains/d"),
        ("GET", "/nothing"),
        ("GET", "/domains/d/unknown"),
        ("POST", "/tags/arn/with/slashes"),
        ("DELETE", "/"),
    ],
)
def test_no_match(method: str, path: str) -> None:
    assert ROUTER.match(method, path) is None


def test_every_operation_has_a_route() -> None:
    assert {route.operation for route in ROUTER.routes()} == set(
        load_service_model().operation_names
    )


def test_greedy_label_and_query_in_request_uri() -> None:
    router = Router(SYNTHETIC)
    assert router.match("GET", "/things/a/b%2Fc/view") == ("GetThing", {"Key": "a/b/c"})
    assert router.match("GET", "/things/special/view") == ("GetOther", {})
    assert router.match("GET", "/things/view") is None


def test_greedy_label_matches_paths_longer_than_every_template() -> None:
    router = Router(SYNTHETIC)
    deep = "/things/" + "/".join(f"p{i}" for i in range(40)) + "/view"
    assert router.match("GET", deep) == (
        "GetThing",
        {"Key": "/".join(f"p{i}" for i in range(40))},
    )
    # Both very long paths share one cached candidate list.
    assert router.match("GET", deep.replace("/view", "/x/view")) is not None
    assert len([key for key in router._by_length if key[0] == "GET"]) == 1


def test_methods_without_routes_are_not_cached() -> None:
    router = Router(load_service_model())
    for n in range(50):
        assert router.match(f"M{n}", "/domains/x") is None
    assert router._by_length == {}
