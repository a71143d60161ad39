"""A contact-record batch on PostgreSQL is applied a bounded number of records a transaction
(contacts.http `process_batch`: PostgreSQL's shared lock table), so an error part-way leaves the
records before it applied: the error says how many, and that sending the batch again is safe;
sent again once the cause is mended, every record is applied once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.contact_loader import found, loaded_data_dir
from tests.unit.integrations.integ_helpers import OTHER_INSTANCE, associate, ctr, make_domain

from openprofiles.app import build_services
from openprofiles.contacts.http import process_batch
from openprofiles.contacts.records import split_records
from openprofiles.context import Services
from openprofiles.crypto.keyring import Keyring
from openprofiles.errors import ServiceError
from openprofiles.settings import Settings


@pytest.fixture
def loaded(settings: Settings) -> Iterator[tuple[Services, list[str]]]:
    with loaded_data_dir(settings) as made:
        yield made


@pytest.mark.parametrize(
    "settings", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_an_error_part_way_says_how_many_records_were_applied(
    loaded: tuple[Services, list[str]], settings: Settings, tmp_path: Path
) -> None:
    services, _ = loaded
    keyring = Keyring(settings.keyring_path)
    key = keyring.create_key("tenant")
    make_domain(services, "keyed", key.arn(settings.region, settings.account_id))
    associate(services, "keyed", OTHER_INSTANCE)
    keyring.disable(key.key_id)
    # 150 records of the loaded domain, then one of the domain whose key is disabled.
    records = [ctr(f"p-{n}", address=f"+1206{5000000 + n:07d}") for n in range(150)]
    records.append(ctr("p-keyed", instance=OTHER_INSTANCE))
    items = split_records(json.dumps(records))
    # A process of its own, as a server or a loader started now: no data key in its cache.
    fresh = build_services(settings)
    try:
        with pytest.raises(ServiceError) as caught:
            process_batch(fresh, items)
    finally:
        fresh.database.dispose()
    message = caught.value.message
    assert "is disabled" in message
    assert "The first 100 of the batch's 151 records were applied before it" in message
    assert "sending the batch again is safe" in message
    assert [found(services, f"p-{n}") for n in (0, 99, 100, 149)] == [1, 1, 0, 0]
    keyring.enable(key.key_id)
    outcome = process_batch(services, items)
    assert (outcome.accepted, outcome.unchanged, outcome.rejected) == (151, 100, [])
    assert all(found(services, f"p-{n}") == 1 for n in range(150))
