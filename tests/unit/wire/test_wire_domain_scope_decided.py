"""Every operation of the model is covered by a credential's domain scope (auth.scope): its URI
names the domain it acts on, under /domains/{DomainName}, or it is one of the operations that
name none, each decided in DOMAINLESS_OPERATIONS. An operation botocore adds is then decided,
not let through to every domain unnoticed."""

from __future__ import annotations

from typing import Any

from openprofiles.auth.scope import DOMAINLESS_OPERATIONS


def test_every_operation_names_its_domain_or_is_decided(service_model: Any) -> None:
    domainless = set()
    for name in service_model.operation_names:
        uri = service_model.operation_model(name).http["requestUri"]
        if "{DomainName}" in uri:
            # What the dispatcher checks is the path's DomainName label.
            assert uri.startswith("/domains/{DomainName}"), (name, uri)
        else:
            domainless.add(name)
    assert domainless == set(DOMAINLESS_OPERATIONS)


def test_the_refusal_is_an_error_the_operations_declare_or_iam_s_own(service_model: Any) -> None:
    """AccessDeniedException is declared by every operation but MergeProfiles and the three tag
    operations; for those, as IAM does, it is answered all the same (botocore reads its code
    from the x-amzn-ErrorType header: tests/wire/test_auth_domain_scope)."""
    undeclared = {
        name
        for name in service_model.operation_names
        if "AccessDeniedException"
        not in {shape.name for shape in service_model.operation_model(name).error_shapes}
    }
    assert undeclared == {"MergeProfiles", "TagResource", "UntagResource", "ListTagsForResource"}
