"""A keyring that is not the database's is refused at start, and reading keys never makes one.

An operator review: `keys list` in a data dir whose keyring.json was lost wrote an empty
keyring, and the server then started on it, made a new default key, and answered every signed
request with a 500 (and /health with ok); a keyring copied from another installation did the
same. On SQLite (the data dir's database) and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from tests.support.installation import install
from tests.unit.integrations.integ_helpers import make_domain

from openprofiles.app import build_services
from openprofiles.cli import main
from openprofiles.crypto.keyring import Keyring
from openprofiles.settings import Settings


def _options(settings: Settings) -> list[str]:
    options = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    return options


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_listing_keys_does_not_make_a_keyring(settings: Settings) -> None:
    code, output = _run("keys", "list", *_options(settings))
    # Nor lists an empty one as if it were an installation's (cli_support.require_installation).
    assert code == 1 and "keyring.json does not exist" in output
    assert not settings.keyring_path.exists()


def test_a_keyring_from_another_installation_is_refused(settings: Settings, tmp_path: Path) -> None:
    options = _options(install(settings))
    assert _run("credentials", "create", "--role", "admin", *options)[0] == 0
    ours = settings.keyring_path.read_bytes()
    elsewhere = install(Settings(data_dir=tmp_path / "elsewhere")).data_dir
    # Another installation's keyring, with a default key of its own.
    assert _run("credentials", "create", "--role", "admin", "--data-dir", str(elsewhere))[0] == 0
    shutil.copy(elsewhere / "keyring.json", settings.keyring_path)

    code, output = _run("credentials", "list", *options)
    assert code == 1
    assert "is not the one this database's data was sealed under" in output
    assert "default key does not open the API credentials" in output
    settings.keyring_path.write_bytes(ours)
    assert _run("credentials", "list", *options)[0] == 0


def test_a_keyring_without_a_domains_local_key_is_refused_naming_it(settings: Settings) -> None:
    options = _options(install(settings))
    # Sealed under the default key: what proves the keyring the database's, a lost key then
    # told from a wrong keyring (domains.unreadable.keyring_problem).
    assert _run("credentials", "create", "--role", "admin", *options)[0] == 0
    code, created = _run("keys", "create", "--alias", "crm-data", *options)
    assert code == 0, created
    services = build_services(settings)
    try:
        resolver = services.keys.resolver
        arn = resolver.local_arn(resolver.keyring.find_by_alias("crm-data"))
        make_domain(services, "crm", arn)
    finally:
        services.database.dispose()
    document = json.loads(settings.keyring_path.read_text())
    document["keys"] = [k for k in document["keys"] if "crm-data" not in json.dumps(k)]
    settings.keyring_path.write_text(json.dumps(document))

    code, output = _run("credentials", "list", *options)
    text = " ".join(output.split())
    assert code == 1
    assert f"does not hold the local key {arn}" in text
    # `keys create` recorded the key in the database: a keyring without it is older than the
    # database, so copying the current keyring.json is the way; the drop, which takes the
    # operator's --key-lost here as well (domains.unreadable), is pointed to, not spelled out
    # (a server restarted after another rotated must not be handed an irreversible command).
    assert "This keyring is older than the database" in text
    assert text.index("copy the current keyring.json") < text.index("drop-unreadable --help")
    assert "--key-lost" not in text and "--confirm" not in text
    code, refused = _run("domains", "drop-unreadable", "crm", "--confirm", *options)
    assert code == 1 and "looks older than the database" in " ".join(refused.split())
    # Only on the operator's word that no copy of the key is left.
    code, dropped = _run(
        "domains", "drop-unreadable", "crm", "--key-lost", arn, "--confirm", *options
    )
    assert code == 0, dropped
    assert _run("credentials", "list", *options)[0] == 0


def test_a_refused_keyring_is_left_as_it_was(settings: Settings) -> None:
    """The check made a default key in a keyring that had none (`keys create` after the file
    was lost), and then refused it: a check must change nothing."""
    options = _options(install(settings))
    assert _run("credentials", "create", "--role", "admin", *options)[0] == 0
    settings.keyring_path.unlink()
    # As `keys create` made it before it refused a data dir without a keyring.
    Keyring(settings.keyring_path).create_key("extra")
    before = settings.keyring_path.read_bytes()

    code, output = _run("credentials", "list", *options)
    assert code == 1
    assert "it has no default key, under which the stored API credentials are sealed" in output
    assert settings.keyring_path.read_bytes() == before
