"""A lost race made by PostgreSQL itself, for tests of the code that runs work again
(store.conflicts): a trigger raises the deadlock's SQLSTATE the first time a table is written,
and a sequence (outside the rolled-back transactions) counts the tries. The test's schema goes
with the test, and the trigger with it."""

from __future__ import annotations

from sqlalchemy import text

from openprofiles.context import Services


def deadlock_once_on(services: Services, table: str, event: str = "UPDATE") -> None:
    """The first `event` (INSERT, UPDATE) of a row of `table` fails as a lost race would."""
    with services.write() as tx:
        for statement in (
            "CREATE SEQUENCE attempts",
            "CREATE FUNCTION deadlock_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF nextval('attempts') = 1 THEN "
            "RAISE EXCEPTION 'deadlock detected (made by the test)' USING ERRCODE = '40P01'; "
            "END IF; RETURN NEW; END $$",
            f"CREATE TRIGGER deadlock_once BEFORE {event} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION deadlock_once()",
        ):
            tx.conn.execute(text(statement))


def attempts(services: Services) -> int:
    """How many rows the trigger of `deadlock_once_on` saw (the first one's write failed)."""
    with services.read() as tx:
        return int(tx.conn.execute(text("SELECT last_value FROM attempts")).scalar_one())
