"""`openprofiles dlq purge` on message ids that are not (or no longer) in the domain's store."""

from __future__ import annotations

import json

from click.testing import CliRunner
from tests.unit.ingest.conftest import DOMAIN, make_domain

from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.dlq import service
from openprofiles.dlq.sinks import dead_letter

from .test_dlq_resend import storage


def test_purge_of_an_unknown_id_fails_naming_it(services: Services) -> None:
    make_domain(services)
    kept = [
        dead_letter(
            services,
            domain_name=DOMAIN,
            object_type_name="Crm",
            object_json=json.dumps({"id": str(n)}),
            reason="No profile matched.",
            category="no_profile",
        ).message_id
        for n in range(2)
    ]
    base = [*storage(services.settings), "--domain", DOMAIN]
    runner = CliRunner()

    unknown = runner.invoke(main, ["dlq", "purge", *base, "nosuchid"])
    assert unknown.exit_code == 1
    assert "The dead-letter message nosuchid does not exist in domain" in unknown.output

    # The ids that exist are purged; the command still fails, naming the others.
    mixed = runner.invoke(main, ["dlq", "purge", *base, "--json", kept[0], "gone1", "gone2"])
    assert mixed.exit_code == 1
    assert json.loads(mixed.stdout) == {"Purged": 1, "NotFound": ["gone1", "gone2"]}
    assert "The dead-letter messages gone1, gone2 do not exist" in mixed.stderr
    with services.read() as tx:
        assert [x.message_id for x in service.list_messages(tx, domain_name=DOMAIN)] == kept[1:]

    done = runner.invoke(main, ["dlq", "purge", *base, "--json", kept[1]])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"Purged": 1, "NotFound": []}
    again = runner.invoke(main, ["dlq", "purge", *base, kept[1]])
    assert again.exit_code == 1 and kept[1] in again.output
