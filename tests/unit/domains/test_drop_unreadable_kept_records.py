"""`openprofiles domains drop-unreadable` deletes the contact records kept for the domain, as
DeleteDomain does (contacts.kept.delete_domains_records). The drop deleted the rows of the
tables with a `domain_name` column only; the records a stream held for the domain (held_for)
have none, stayed, and flowed into the next domain of that name once its instance was
associated with it: a dropped domain's customer data outliving it."""

from __future__ import annotations

import json
import uuid

from click.testing import CliRunner
from sqlalchemy import select
from tests.unit.integrations.integ_helpers import INSTANCE, OTHER_INSTANCE, associate, ctr

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.contacts.kept import keep_unrouted_rows
from openprofiles.crypto.keyring import Keyring
from openprofiles.domains.service import create_domain
from openprofiles.domains.unreadable import drop_unreadable
from openprofiles.settings import Settings
from openprofiles.store.database import Database
from openprofiles.store.schema import unrouted_contact_record

DROPPED, KEPT = "care-lost", "care-kept"


def held_for(settings: Settings) -> list[str | None]:
    """The domain each kept record is held for."""
    database = Database.from_settings(settings)
    try:
        with database.read() as conn:
            query = select(unrouted_contact_record.c.held_for).order_by(
                unrouted_contact_record.c.held_for
            )
            return list(conn.execute(query).scalars())
    finally:
        database.dispose()


def test_the_drop_deletes_the_records_held_for_the_domain(settings: Settings) -> None:
    keyring = Keyring(settings.keyring_path)
    lost = keyring.create_key("lost")
    arn = lost.arn(settings.region, settings.account_id)
    services = build_services(settings)
    try:
        for name, key, instance in ((DROPPED, arn, INSTANCE), (KEPT, None, OTHER_INSTANCE)):
            wrapped = services.keys.new_domain_key(name, key)
            with services.write() as tx:
                create_domain(
                    tx,
                    domain_name=name,
                    config={"DefaultExpirationDays": 30},
                    key_id=wrapped.key_id,
                    wrapped_key=wrapped.wrapped,
                )
            associate(services, name, instance)
        # What a stream leaves when a domain cannot take its records: each held for it.
        with services.write() as tx:
            keep_unrouted_rows(
                tx,
                [
                    (instance, json.dumps(ctr(uuid.uuid4().hex, instance=instance)), "held", None)
                    + (name, None)
                    for name, instance in ((DROPPED, INSTANCE), (KEPT, OTHER_INSTANCE))
                ],
            )
    finally:
        services.database.dispose()
    # An API credential: something sealed under the keyring's default key, which shows the
    # keyring is the database's (domains.unreadable.keyring_problem).
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    created = CliRunner().invoke(main, ["credentials", "create", "--role", "admin", *options])
    assert created.exit_code == 0, created.output
    document = json.loads(settings.keyring_path.read_text())
    document["keys"] = [k for k in document["keys"] if k["id"] != lost.key_id]
    settings.keyring_path.write_text(json.dumps(document))

    told = drop_unreadable(settings, DROPPED, confirm=False, key_lost=arn)
    assert told.rows.get("unrouted_contact_record") == 1, told.rows
    assert held_for(settings) == sorted([DROPPED, KEPT])  # the dry run deleted nothing

    dropped = drop_unreadable(settings, DROPPED, confirm=True, key_lost=arn)
    assert dropped.deleted
    assert dropped.rows.get("unrouted_contact_record") == 1, dropped.rows
    assert held_for(settings) == [KEPT]
