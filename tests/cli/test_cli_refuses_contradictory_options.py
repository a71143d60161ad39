"""`openprofiles dlq` and `openprofiles instances` refuse, as a usage error naming the option
(exit 2) and before anything is read or changed, the options a fuzz run found them taking in
silence (both backends, a real data dir and database):

- `dlq list --all --limit 5` listed every dead letter, the --limit dropped;
- `dlq resend --limit` had no maximum (`dlq list --limit` has one, MAX_LIMIT);
- `instances associate --object-type ''` associated the instance as CTR;
- `instances unrouted --instance not-an-arn` and `purge-unrouted --instance not-an-arn` found
  nothing for it, as if the instance had no kept record;
- `instances purge-unrouted --instance ''` said no record was kept "without an instance" while
  `instances unrouted` counted one as "(no instance)"."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from tests.support.contact_loader import D, loaded_data_dir
from tests.unit.integrations.integ_helpers import INSTANCE, OTHER_INSTANCE, ctr, send

from openprofiles.cli import main
from openprofiles.contacts.kept import count_unrouted
from openprofiles.context import Services
from openprofiles.dlq import service as dlq
from openprofiles.dlq.cli import MAX_LIMIT
from openprofiles.integrations.service import list_instances
from openprofiles.settings import Settings


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    """Domain D with INSTANCE associated; the commands' storage options."""
    with loaded_data_dir(settings) as made:
        yield made


def _run(options: list[str], *args: str) -> Result:
    return CliRunner().invoke(main, [*args, *options])


def _usage_error(result: Result, name: str, *says: str) -> None:
    """A click usage error (exit 2) naming the option `name`, saying each of `says`."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == 2, result.output
    assert f"'{name}'" in result.output, result.output
    for text in says:
        assert text in " ".join(result.output.split()), result.output


def _letters(services: Services, count: int) -> list[str]:
    with services.write() as tx:
        for n in range(count):
            dlq.put(
                tx,
                domain_name=D,
                object_type_name="Crm",
                object_json=json.dumps({"id": str(n)}),
                reason="No profile matched.",
                category="no_profile",
            )
    with services.read() as tx:
        return [x.message_id for x in dlq.list_messages(tx, domain_name=D)]


def test_dlq_list_all_with_a_limit_is_a_usage_error(loaded: tuple[Services, list[str]]) -> None:
    """Either asks for something the other drops (every one, a page): neither is guessed."""
    services, options = loaded
    ids = _letters(services, 7)

    for limit in ("5", "100"):
        refused = _run(options, "dlq", "list", "--domain", D, "--all", "--limit", limit)
        assert refused.exit_code == 2, refused.output
        assert "Give --all or --limit, not both" in refused.output
        assert "dead letter" in refused.output
        assert not any(x in refused.output for x in ids)

    every = _run(options, "dlq", "list", "--domain", D, "--all")
    assert every.exit_code == 0, every.output
    assert [line.split()[0] for line in every.output.splitlines()] == ids
    page = _run(options, "dlq", "list", "--domain", D, "--limit", "5", "--json")
    assert page.exit_code == 0, page.output
    assert [x["MessageId"] for x in json.loads(page.stdout)] == ids[:5]


@pytest.mark.parametrize("limit", [str(MAX_LIMIT + 1), str(2**63), str(2**64)])
def test_dlq_resend_limit_past_its_maximum_is_a_usage_error(
    loaded: tuple[Services, list[str]], limit: str
) -> None:
    _, options = loaded
    refused = _run(options, "dlq", "resend", "--domain", D, "--limit", limit)
    _usage_error(refused, "--limit", f"1<=x<={MAX_LIMIT}")


def _associated(services: Services) -> list[tuple[str, str, str | None]]:
    with services.read() as tx:
        return [(i.uri, i.domain_name, i.object_type_name) for i in list_instances(tx)]


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--object-type", "", "no object type has an empty name"),
        ("--object-type", "  ", "leave --object-type out for the default"),
        ("--domain", "", "no domain has an empty name"),
        ("--instance", "", "an empty ARN names no instance"),
        ("--instance", "not-an-arn", '"not-an-arn" is not an Amazon Connect instance ARN'),
    ],
)
def test_instances_associate_refuses_an_empty_name(
    loaded: tuple[Services, list[str]], option: str, value: str, says: str
) -> None:
    """`--object-type ''` was read as not given: the instance was associated as CTR."""
    services, options = loaded
    before = _associated(services)
    given = {"--instance": OTHER_INSTANCE, "--domain": D, "--object-type": "Calls", option: value}

    refused = _run(options, "instances", "associate", *[x for kv in given.items() for x in kv])

    _usage_error(refused, option, says)
    assert _associated(services) == before


def _kept(services: Services) -> dict[str | None, int]:
    """Two records kept for OTHER_INSTANCE (associated with no domain), one without an ARN."""
    anonymous = ctr("n-0")
    del anonymous["InstanceARN"]
    send(services, ctr("p-0", instance=OTHER_INSTANCE), ctr("p-1", instance=OTHER_INSTANCE))
    send(services, anonymous)
    with services.read() as tx:
        return count_unrouted(tx, waiting=False)


MALFORMED = [
    "not-an-arn",
    # Almost an instance ARN: another service, no account, a contact flow, a trailing newline.
    INSTANCE.replace(":connect:", ":profile:"),
    INSTANCE.replace(":111122223333:", "::"),
    f"{INSTANCE}/contact-flow/abc",
    f"{INSTANCE}\n",
]


@pytest.mark.parametrize("command", [["unrouted"], ["purge-unrouted", "--yes"]])
@pytest.mark.parametrize("arn", MALFORMED)
def test_instances_unrouted_and_purge_refuse_a_malformed_instance_arn(
    loaded: tuple[Services, list[str]], command: list[str], arn: str
) -> None:
    """Taken as it was, it matched no kept record: "none kept for" an instance that is none."""
    services, options = loaded
    before = _kept(services)

    refused = _run(options, "instances", *command, "--instance", arn)

    _usage_error(refused, "--instance", "is not an Amazon Connect instance ARN")
    assert "arn:aws:connect:REGION:ACCOUNT:instance/ID" in refused.output
    with services.read() as tx:
        assert count_unrouted(tx, waiting=False) == before


@pytest.mark.parametrize(
    ("command", "points_at"),
    [
        (["purge-unrouted", "--yes"], "give --without-instance instead"),
        (["unrouted"], "leave --instance out: they are listed as (no instance)"),
    ],
)
@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_instance_is_a_usage_error_pointing_at_the_records_without_one(
    loaded: tuple[Services, list[str]], command: list[str], points_at: str, empty: str
) -> None:
    """`purge-unrouted --instance ''` said "No contact records are kept without an instance"
    while `unrouted` listed "(no instance)  1"."""
    services, options = loaded
    before = _kept(services)
    assert before[None] == 1

    refused = _run(options, "instances", *command, "--instance", empty)

    _usage_error(refused, "--instance", "an empty ARN names no instance", points_at)
    with services.read() as tx:
        assert count_unrouted(tx, waiting=False) == before
    listed = _run(options, "instances", "unrouted")
    assert "(no instance)  1" in listed.output
    deleted = _run(options, "instances", "purge-unrouted", "--without-instance", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "Deleted 1 contact record kept without an instance." in deleted.output


def test_a_well_formed_instance_arn_is_taken(loaded: tuple[Services, list[str]]) -> None:
    services, options = loaded
    _kept(services)
    counted = _run(options, "instances", "unrouted", "--instance", OTHER_INSTANCE)
    assert counted.exit_code == 0, counted.output
    assert counted.output == f"{OTHER_INSTANCE}  2\n"
