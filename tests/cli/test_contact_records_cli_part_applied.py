"""`openprofiles ingest contact-records` stopped part-way through a batch says truthfully how many
records it applied. On PostgreSQL a batch is applied a bounded number of records a transaction
(store.chunks), so an error in a later transaction of a batch leaves the earlier ones committed:
the loader said "Stopped after 0 of 151 records" while 100 were in the database. It counts each
transaction once committed now."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.support.contact_loader import found, loaded_data_dir
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, associate, ctr, make_domain

from openprofiles.cli import main
from openprofiles.crypto.keyring import Keyring
from openprofiles.settings import Settings
from openprofiles.store.chunks import PG_RECORDS_PER_TRANSACTION


@pytest.mark.parametrize(
    "settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_an_error_in_a_later_transaction_of_a_batch_counts_those_committed(
    settings: Settings, tmp_path: Path
) -> None:
    count = PG_RECORDS_PER_TRANSACTION + 50
    with loaded_data_dir(settings) as (services, options):
        keyring = Keyring(settings.keyring_path)
        key = keyring.create_key("tenant")
        make_domain(services, "keyed", key.arn(settings.region, settings.account_id))
        associate(services, "keyed", OTHER_INSTANCE)
        keyring.disable(key.key_id)
        # 150 records of the loaded domain, then one of the domain whose key is disabled: the
        # second transaction of the batch fails.
        records = [ctr(f"p-{n}", address=f"+1206{5000000 + n:07d}") for n in range(count)]
        records.append(ctr("p-keyed", instance=OTHER_INSTANCE))
        file = tmp_path / "ctr.jsonl"
        file.write_text("".join(json.dumps(r) + "\n" for r in records))

        result = CliRunner().invoke(
            main, ["ingest", "contact-records", *options, str(file), "--batch-size", "500"]
        )

        assert result.exit_code == 1, result.output
        message = " ".join(result.output.split())
        assert "is disabled" in message
        stopped = re.search(r"Stopped after (\d+) of (\d+) records \((\d+) accepted", message)
        assert stopped is not None, message
        committed = sum(found(services, f"p-{n}") for n in range(count))
        assert committed == PG_RECORDS_PER_TRANSACTION
        assert [int(n) for n in stopped.groups()] == [committed, count + 1, committed]
