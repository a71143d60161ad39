"""Route table: an empty URI label is refused, not routed to the parent List operation, and a
path whose escapes are not UTF-8 is refused, not read with U+FFFD in it.

botocore (with parameter validation off, as other SDKs have none) sends
GetProfileObjectType(ObjectTypeName='') as `GET /domains/d/object-types/`: with the trailing
slash dropped that was ListProfileObjectTypes, whose answer the client read as an empty Get.
"""

from __future__ import annotations

import pytest

from openprofiles.errors import BadRequest
from openprofiles.wire.model import load_service_model
from openprofiles.wire.routing import Router

MODEL = load_service_model()
ROUTER = Router(MODEL)


@pytest.mark.parametrize(
    ("method", "path", "member"),
    [
        ("GET", "/domains/d1/object-types/", "ObjectTypeName"),
        ("GET", "/domains/", "DomainName"),
        ("GET", "/templates/", "TemplateId"),
        ("POST", "/domains/", "DomainName"),
        ("DELETE", "/domains/d1/object-types/", "ObjectTypeName"),
        ("GET", "/domains/d1/profiles/p1/history-records/", "Id"),
        # Empty in the middle, and the first of two empty labels is named.
        ("GET", "/domains//object-types/t", "DomainName"),
        ("GET", "/domains//object-types/", "DomainName"),
        ("GET", "/domains//", "DomainName"),
    ],
)
def test_an_empty_label_is_refused_naming_its_member(method: str, path: str, member: str) -> None:
    with pytest.raises(BadRequest) as caught:
        ROUTER.match(method, path)
    assert caught.value.message == (
        f"1 validation error detected: {member} must have length at least 1"
    )


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/domains", ("ListDomains", {})),
        ("GET", "/domains/d1/object-types", ("ListProfileObjectTypes", {"DomainName": "d1"})),
        ("GET", "/templates", ("ListProfileObjectTypeTemplates", {})),
        # One trailing slash after a path whose labels are all there is still forgiven.
        ("GET", "/domains/d1/", ("GetDomain", {"DomainName": "d1"})),
        (
            "GET",
            "/domains/d1/object-types/t1/",
            ("GetProfileObjectType", {"DomainName": "d1", "ObjectTypeName": "t1"}),
        ),
    ],
)
def test_full_paths_still_route(method: str, path: str, expected: tuple[str, object]) -> None:
    assert ROUTER.match(method, path) == expected


def test_no_route_of_the_model_ends_in_a_slash() -> None:
    """What makes refusing `GET /domains/` safe: no SDK sends a List with a trailing slash."""
    for name in MODEL.operation_names:
        path = str(MODEL.operation_model(name).http["requestUri"]).split("?", 1)[0]
        assert path == "/" or not path.endswith("/"), name


def test_a_path_of_an_empty_label_still_names_its_operations_for_another_method() -> None:
    # A PATCH there is told which methods the path takes (MethodNotAllowed), as for any path.
    assert ROUTER.match("PATCH", "/domains/") is None
    assert ("GET", "GetDomain") in ROUTER.operations_at("/domains/")


@pytest.mark.parametrize(
    "path",
    [
        "/domains/d1/profile-attributes/Address%FF/values",
        "/domains/d1%FF",
        "/domains/d1/object-types%FF",
        "/tags/arn%3Aaws%3Aprofile%3Aus-east-1%3A000000000000%3Adomains%2Fd1%C3",
    ],
)
def test_a_path_that_is_not_utf8_is_refused(path: str) -> None:
    with pytest.raises(BadRequest) as caught:
        ROUTER.match("GET", path)
    assert caught.value.message == "The path is not valid UTF-8."
    # Asked for the methods it takes (the cross-origin check does): none, and no error.
    assert ROUTER.operations_at(path) == []


def test_utf8_escapes_in_a_label_are_decoded() -> None:
    assert ROUTER.match("GET", "/domains/d1/profile-attributes/%C3%BC/values") == (
        "ListProfileAttributeValues",
        {"DomainName": "d1", "AttributeName": "ü"},
    )
