"""Two DeleteDomain of one domain at once: the first deletes it; the second answers NotFound
(HTTP 404, ResourceNotFoundException), with the message of a DeleteDomain of a domain that never
existed, not a success for a deletion it did not make.

A helper's report: on PostgreSQL (READ COMMITTED, several server processes), the second read the
domain before it waited for the domain's lock (integrations.service.lock_domain_instances), which
the first held, then went on once the first had committed: it deleted nothing and answered
"Domain ... and all of its data were deleted." SQLite's single writer serialises the two whole
transactions, so the second reads the domain after the first committed; the same request after
the deletion is tested on both backends.

The racing test keeps the first deletion's transaction open until the second waits for one of
its locks (tests.support.lock_waits)."""

from __future__ import annotations

import pytest
from tests.support.lock_waits import second_writer_meets_first
from tests.unit.integrations.integ_helpers import INSTANCE, associate, make_domain

from openprofiles.context import Principal, RequestContext, Services
from openprofiles.domains.handlers import delete_domain as delete_domain_op
from openprofiles.domains.service import delete_domain, find_domain
from openprofiles.errors import NotFound
from openprofiles.integrations.service import instance_domain

D = "deleted-twice"


def _ctx(services: Services) -> RequestContext:
    return RequestContext(services=services, principal=Principal("test", "admin"))


def _not_found_for_an_unknown_domain(services: Services) -> NotFound:
    """What a DeleteDomain of a domain that never existed raises."""
    with pytest.raises(NotFound) as unknown:
        delete_domain_op(_ctx(services), {"DomainName": D + "-never"})
    return unknown.value


def _assert_same_answer(outcome: object, unknown: NotFound) -> None:
    assert isinstance(outcome, NotFound), outcome
    assert outcome.code == unknown.code == "ResourceNotFoundException"
    assert outcome.status == unknown.status == 404
    assert outcome.message == unknown.message.replace(D + "-never", D)


@pytest.mark.parametrize("settings", ["postgres"], indirect=True)
def test_a_deletion_that_waited_for_another_of_the_same_domain_is_not_found(
    services: Services,
) -> None:
    make_domain(services, D)
    associate(services, D, INSTANCE)

    def delete() -> object:
        return delete_domain_op(_ctx(services), {"DomainName": D})

    outcome = second_writer_meets_first(
        services, lambda tx: delete_domain(tx, domain_name=D), delete
    )

    _assert_same_answer(outcome, _not_found_for_an_unknown_domain(services))
    with services.read() as tx:
        assert find_domain(tx, domain_name=D) is None
        assert instance_domain(tx, instance_arn=INSTANCE) is None


def test_a_deletion_after_another_of_the_same_domain_is_not_found(services: Services) -> None:
    """Both backends: the second request, sent once the first has been answered."""
    make_domain(services, D)
    answered = delete_domain_op(_ctx(services), {"DomainName": D})
    assert answered == {"Message": f"Domain {D} and all of its data were deleted."}

    with pytest.raises(NotFound) as again:
        delete_domain_op(_ctx(services), {"DomainName": D})

    _assert_same_answer(again.value, _not_found_for_an_unknown_domain(services))
