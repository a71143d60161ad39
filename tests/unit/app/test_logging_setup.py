"""Logged exceptions carry no personal data (openprofiles.logging_setup): an internal error of
the real server, whose SQLAlchemy error quotes the request's value among its parameters, is
logged with its type and frames but without that value; the same for any logger and handler,
for exceptions passed as arguments, and for uncaught exceptions of threads."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from tests.support.installation import install
from tests.support.ports import free_port
from tests.support.server import run_server

from openprofiles import logging_setup
from openprofiles.cli import main
from openprofiles.dlq.sinks import SinkError
from openprofiles.settings import Settings

MARKER = "leakmarker7f3a"


@pytest.fixture
def safe_logging() -> Iterator[None]:
    already = logging_setup.installed()
    logging_setup.install()
    yield
    if not already:
        logging_setup.uninstall()


def failing_with_marker() -> BaseException:
    """A realistic chain: a record's value fails to parse, and the handling of it fails too."""
    try:
        try:
            json.loads('{"email": "' + MARKER)
        except ValueError:
            int(MARKER)
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def test_internal_server_error_is_logged_without_the_sql_parameters(
    sqlite_settings: Settings, safe_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    with run_server(sqlite_settings) as server:
        # The domain table disappears under the running server: the next GetDomain fails inside
        # SQLAlchemy, whose error message lists the statement's parameters (the domain name).
        with sqlite3.connect(sqlite_settings.sqlite_path) as db:
            db.execute("ALTER TABLE domain RENAME TO domain_gone")
        with caplog.at_level(logging.ERROR), pytest.raises(ClientError) as caught:
            server.client().get_domain(DomainName=MARKER)
    assert caught.value.response["Error"]["Code"] == "InternalServerException"
    logged = caplog.text
    assert "sqlalchemy.exc.OperationalError (sqlite3.OperationalError)" in logged
    assert "Traceback (most recent call last)" in logged and "dispatch.py" in logged
    assert logging_setup.WITHHELD in logged
    assert MARKER not in logged
    assert all(record.exc_info is None for record in caplog.records)


def test_any_logger_and_handler_gets_the_exception_without_message_or_locals(
    safe_logging: None, tmp_path: Path
) -> None:
    path = tmp_path / "log.txt"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("some.library")
    logger.addHandler(handler)
    try:
        error = failing_with_marker()
        logger.error("parsing failed: %s", error, exc_info=error)
        logger.warning("also as the message itself")
        logger.warning(error)
        logger.error("named %(error)s", {"error": error})
    finally:
        logger.removeHandler(handler)
        handler.close()
    logged = path.read_text()
    assert MARKER not in logged
    assert "parsing failed: ValueError: " + logging_setup.WITHHELD in logged
    assert "json.decoder.JSONDecodeError" in logged
    assert "During handling of the above exception" in logged
    assert "failing_with_marker" in logged and "int(MARKER)" in logged
    assert "named ValueError" in logged


def test_safe_types_keep_their_message(safe_logging: None) -> None:
    assert logging_setup.describe(TimeoutError("timed out")) == "TimeoutError: timed out"

    class Declared(Exception):
        message_has_no_personal_data = True

    assert logging_setup.describe(Declared("fixed text")).endswith("Declared: fixed text")


def test_a_queue_refusal_is_withheld(safe_logging: None) -> None:
    """SQS's error text may echo the message attributes sent: the reason, quoting a value."""
    refused = SinkError(f"SQS refused the message: InvalidParameterValue: {MARKER}")
    assert logging_setup.describe(refused) == (
        "openprofiles.dlq.sinks.SinkError: " + logging_setup.WITHHELD
    )


def test_uncaught_exception_of_a_thread(
    safe_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    def work() -> None:
        raise failing_with_marker()

    thread = threading.Thread(target=work, name="worker")
    thread.start()
    thread.join()
    printed = capsys.readouterr().err
    assert "Exception in thread worker" in printed and "ValueError" in printed
    assert MARKER not in printed


def test_the_command_installs_it(tmp_path: Path) -> None:
    already = logging_setup.installed()
    try:
        result = CliRunner().invoke(
            main, ["dlq", "list", "--domain", "none", "--data-dir", str(tmp_path)]
        )
        assert result.exit_code != 0 and "none" in result.output
        assert logging_setup.installed()
    finally:
        if not already:
            logging_setup.uninstall()


def test_create_app_installs_it(sqlite_settings: Settings) -> None:
    from openprofiles.app import create_app

    already = logging_setup.installed()
    try:
        if already:
            logging_setup.uninstall()
        app = create_app(sqlite_settings)
        assert logging_setup.installed()
        app.state.services.database.dispose()
    finally:
        if not already:
            logging_setup.uninstall()


def test_database_errors_never_quote_their_parameters(sqlite_settings: Settings) -> None:
    """Wherever a SQLAlchemy error's text ends up, the statement's values are not in it."""
    from sqlalchemy import text

    from openprofiles.store.database import Database

    database = Database.from_settings(sqlite_settings)
    try:
        with pytest.raises(Exception) as caught, database.read() as conn:
            conn.execute(text("SELECT * FROM no_such_table WHERE x = :v"), {"v": MARKER})
        assert "no_such_table" in str(caught.value)
        assert MARKER not in str(caught.value)
    finally:
        database.dispose()


def test_an_os_error_shows_the_system_reason_but_not_the_file_name() -> None:
    """An operator whose port was taken read only "OSError: (message withheld ...)"."""
    error = OSError(98, "Address already in use")
    assert logging_setup.describe(error) == (
        "OSError: [Errno 98] Address already in use (file name, if any, withheld)"
    )
    named = FileNotFoundError(2, "No such file or directory", "/data/alice@example.com.jsonl")
    assert "alice" not in logging_setup.describe(named)
    assert "No such file or directory" in logging_setup.describe(named)


def test_commands_say_why_the_database_or_keyring_cannot_be_used(tmp_path: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(
        main,
        [
            "credentials",
            "list",
            "--database-url",
            "postgresql://postgres:secret@127.0.0.1:1/test",
        ],
    )
    assert refused.exit_code == 1
    assert "Cannot open the database postgresql://postgres:***@127.0.0.1:1/test" in refused.output
    assert "secret" not in refused.output and "Traceback" not in refused.output
    # libpq also takes the password as a query parameter.
    in_query = runner.invoke(
        main,
        [
            "credentials",
            "list",
            "--database-url",
            "postgresql://postgres@127.0.0.1:1/test?password=secret&sslmode=disable",
        ],
    )
    assert in_query.exit_code == 1
    assert (
        "Cannot open the database "
        "postgresql://postgres@127.0.0.1:1/test?password=***&sslmode=disable"
    ) in in_query.output
    assert "secret" not in in_query.output
    # serve says it the same way (it opened the database on its own, with a traceback).
    port = free_port()  # a port free now, so the address check passes
    served = runner.invoke(
        main,
        [
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "serve"),
            "--database-url",
            "postgresql://postgres:secret@127.0.0.1:1/test",
        ],
    )
    assert served.exit_code == 1
    assert "Cannot open the database postgresql://postgres:***@127.0.0.1:1/test" in served.output
    install(Settings(data_dir=tmp_path))
    (tmp_path / "keyring.json").write_text("")
    (tmp_path / "keyring.json").chmod(0o600)
    broken = runner.invoke(main, ["credentials", "list", "--data-dir", str(tmp_path)])
    assert broken.exit_code == 1 and "restore it from a backup" in broken.output


@pytest.mark.moto
def test_the_aws_sdk_logs_no_data_key_under_a_debug_root(
    safe_logging: None, moto_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An application embedding the server with its root logger at DEBUG: botocore logged each
    response body, a KMS data key's Plaintext among them, and each SQS message sent."""
    import base64

    import boto3

    kms = boto3.client(
        "kms",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    with caplog.at_level(logging.DEBUG):
        data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")["Plaintext"]
        logging.getLogger("openprofiles.test").debug("our own DEBUG records still go")
    assert base64.b64encode(data_key).decode() not in caplog.text
    assert "GenerateDataKey" not in caplog.text
    assert "our own DEBUG records still go" in caplog.text


def _pool_reset_failure(during: BaseException) -> BaseException:
    """The error SQLAlchemy's pool logs when it cannot roll a connection back, raised while
    `during` was being handled (as a broken connection's rollback fails after it)."""
    try:
        try:
            raise during
        except BaseException:
            raise ConnectionError("the connection is lost") from None
    except ConnectionError as exc:
        exc.__context__ = during
        return exc


@pytest.mark.parametrize(
    ("during", "printed"),
    [(KeyboardInterrupt(), False), (ValueError("not an interruption"), True)],
)
def test_a_pool_reset_an_interruption_broke_is_not_printed(
    safe_logging: None, capsys: pytest.CaptureFixture[str], during: BaseException, printed: bool
) -> None:
    # SIGTERM or Ctrl-C in the middle of a PostgreSQL statement breaks the connection: the pool's
    # failed rollback printed a traceback above the loader's "Interrupted: ..." message.
    logging_setup.log_to_stderr()
    error = _pool_reset_failure(during)
    logging.getLogger("sqlalchemy.pool.impl.QueuePool").error(
        "Exception during reset or similar", exc_info=(type(error), error, error.__traceback__)
    )
    assert ("Exception during reset" in capsys.readouterr().err) is printed
