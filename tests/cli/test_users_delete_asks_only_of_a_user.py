"""`openprofiles users delete NAME` asks for confirmation only when NAME is a user.

An operator review: `users delete ghost` asked "Delete the web user ghost and end their
sessions? [y/N]", and only after a yes said there was no such user."""

from __future__ import annotations

from click.testing import CliRunner, Result

from openprofiles.cli import main
from openprofiles.context import Services
from openprofiles.users import service as users


def _delete(services: Services, *args: str, answer: str = "") -> Result:
    storage = ["--data-dir", str(services.settings.data_dir)]
    if services.settings.database_url:
        storage += ["--database-url", services.settings.database_url]
    return CliRunner().invoke(main, ["users", "delete", *args, *storage], input=answer)


def test_an_unknown_user_is_refused_before_the_question(services: Services) -> None:
    with services.write() as tx:
        users.create_user(tx, username="boss", password="long enough", role="admin")

    ghost = _delete(services, "ghost", answer="y\n")

    assert ghost.exit_code == 1, ghost.output
    assert "Delete the web user" not in ghost.output
    assert "There is no user named ghost; nothing was deleted." in ghost.output


def test_a_user_is_still_asked_about_and_kept_on_no(services: Services) -> None:
    with services.write() as tx:
        users.create_user(tx, username="boss", password="long enough", role="admin")
        users.create_user(tx, username="ana", password="long enough", role="agent")

    kept = _delete(services, "ana", answer="n\n")
    assert kept.exit_code == 1
    assert "Delete the web user ana and end their sessions? [y/N]" in kept.output
    deleted = _delete(services, "ana", answer="y\n")
    assert deleted.exit_code == 0, deleted.output
    with services.read() as tx:
        assert [u.username for u in users.list_users(tx)] == ["boss"]
