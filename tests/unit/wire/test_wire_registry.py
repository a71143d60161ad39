"""Handler registry: snake_case names, duplicate detection, coverage of the model."""

from __future__ import annotations

import types
from typing import Any

import pytest
from botocore import xform_name

from openprofiles.wire.model import load_service_model
from openprofiles.wire.registry import build_registry, snake_case, unimplemented_operations

MODEL = load_service_model()


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("CreateDomain", "create_domain"),
        ("BatchGetProfile", "batch_get_profile"),
        ("ListProfileObjectTypeTemplates", "list_profile_object_type_templates"),
        ("GetAutoMergingPreview", "get_auto_merging_preview"),
        ("BatchGetCalculatedAttributeForProfile", "batch_get_calculated_attribute_for_profile"),
        ("GetDNSName", "get_dns_name"),
        ("PutS3Object", "put_s3_object"),
    ],
)
def test_snake_case(operation: str, expected: str) -> None:
    assert snake_case(operation) == expected


@pytest.mark.parametrize("operation", MODEL.operation_names)
def test_snake_case_agrees_with_boto3_method_names(operation: str) -> None:
    # boto3 client method names are the names users know; handlers should match them.
    assert snake_case(operation) == xform_name(operation)


def _module(name: str, **functions: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for function_name, function in functions.items():
        function.__module__ = name
        function.__name__ = function_name
        setattr(module, function_name, function)
    return module


def test_build_registry_and_unimplemented() -> None:
    def create_domain() -> None: ...
    def get_domain() -> None: ...
    def helper() -> None: ...

    domains = _module("fake.domains", create_domain=create_domain, helper=helper)
    other = _module("fake.other", get_domain=get_domain)
    registry = build_registry([domains, other], MODEL)
    assert registry == {"CreateDomain": create_domain, "GetDomain": get_domain}
    missing = unimplemented_operations(registry, MODEL)
    assert "CreateDomain" not in missing and "ListDomains" in missing
    assert len(missing) == len(MODEL.operation_names) - 2
    assert missing == sorted(missing)


def test_duplicate_handlers_raise() -> None:
    def first() -> None: ...
    def second() -> None: ...

    one = _module("fake.one", list_domains=first)
    two = _module("fake.two", list_domains=second)
    with pytest.raises(ValueError, match="ListDomains is implemented twice"):
        build_registry([one, two], MODEL)


def test_imported_functions_are_not_handlers() -> None:
    def list_domains() -> None: ...

    list_domains.__module__ = "fake.service"
    handlers = types.ModuleType("fake.handlers")
    handlers.list_domains = list_domains  # type: ignore[attr-defined]
    handlers.get_domain = len  # type: ignore[attr-defined]  # a builtin, not a function
    assert build_registry([handlers], MODEL) == {}
