"""What every `openprofiles` subcommand shares: the storage options, opening the services, and
the audit line of each command that changes state or prints personal data (`audit_commands`),
appended to the audit log's file (OPENPROFILES_AUDIT_LOG) while the command runs.

Feature packages define their command groups next to their services (e.g. dlq/cli.py) and
build on these helpers; cli.py assembles the groups into the `openprofiles` command.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from openprofiles.settings import Settings, database_url_problem, is_http_url
from openprofiles.signals import sigterm_handled_by

if TYPE_CHECKING:
    from openprofiles import logging_setup
    from openprofiles.context import Services
    from openprofiles.held_values import HeldValue

F = TypeVar("F", bound=Callable[..., Any])

# The most records an `ingest` command's --batch-size reads at a time: a larger one is memory
# no load needs (and one past sys.maxsize is refused by itertools.islice, a traceback).
MAX_BATCH_SIZE = 100_000
# The most seconds a watching command (`flows watch --every`) waits between passes: a day; a
# wait past threading's limit (or infinite) overflows.
MAX_EVERY_SECONDS = 86_400.0


def storage_options(command: F) -> F:
    """--data-dir and --database-url, on every command that touches stored state."""
    command = click.option(
        "--database-url",
        default=None,
        callback=_database_url,
        help=(
            "postgresql://... to use PostgreSQL (default: SQLite in the data dir). Give a "
            "password in OPENPROFILES_DATABASE_URL, ~/.pgpass or PGPASSWORD, not here."
        ),
    )(command)
    command = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where the SQLite database and the local keyring live (default: .data).",
    )(command)
    return command


def scope_options(domain_help: str, every_domain_help: str) -> Callable[[F], F]:
    """--domain NAME (repeated) and --all-domains, of the commands that set what a web user or
    an access key may see (`users scope`, `credentials scope`); `chosen_scope` reads them."""

    def decorate(command: F) -> F:
        command = click.option("--all-domains", is_flag=True, help=every_domain_help)(command)
        return click.option(
            "--domain",
            "domains",
            multiple=True,
            metavar="NAME",
            help=f"{domain_help} These replace the domains it had. Give --domain or --all-domains.",
        )(command)

    return decorate


def chosen_scope(domains: tuple[str, ...], all_domains: bool) -> tuple[str, ...] | None:
    """The scope `scope_options` were given: the domains, or None for every domain; exactly one
    of the two options must be given (a scope command with neither would change nothing)."""
    if bool(domains) == all_domains:
        raise click.UsageError("Give --domain (one or more) or --all-domains.")
    return None if all_domains else domains


yes_option = click.option(
    "--yes", is_flag=True, help="Do not ask for confirmation (needed when not at a terminal)."
)


def confirm_bulk_delete(what: str, count: int, *, yes: bool) -> bool:
    """Whether a command that deletes customers' records in bulk (`dlq purge --all`,
    `instances purge-unrouted --instance ARN`) goes on: `what` is what it would delete,
    counted ("3 dead letters of domain acme"); `count`, how many. The caller then deletes
    those it counted, by id, not what is there by the answer: a server may keep more while the
    question waits. False when there is nothing to delete (the caller says so; nothing is
    asked). Unless --yes (`yes_option`) was given, the operator is asked on stderr (stdout may
    be a command's --json), and a no ends the command (click's "Aborted!", exit status 1).

    Without --yes and with no terminal on stdin it is refused, whatever the count: a script
    would otherwise hang on the question, or, fed a `y` by `yes |`, delete what no one saw;
    refused even with nothing to delete, so a script learns it needs --yes on its first run,
    not on the day there is something to delete. The records are not ingested yet or kept
    for a replay: none can be brought back."""
    if not yes and not _stdin_is_a_terminal():
        raise click.UsageError(
            f"Deleting {what} needs a confirmation, which cannot be asked for: standard input "
            "is not a terminal. Add --yes to delete without asking. Nothing was deleted."
        )
    if count == 0:
        return False
    if not yes:
        click.confirm(f"Delete {what}? They cannot be brought back.", abort=True, err=True)
    return True


def gone_meanwhile(counted: int, deleted: int, why: str) -> str | None:
    """What a bulk purge says of the records it counted (`confirm_bulk_delete`) that were gone
    when it deleted (`why`: how records go meanwhile); None when it deleted every one."""
    gone = counted - deleted
    if gone <= 0:
        return None
    return f"{gone} of the {counted} counted {'was' if gone == 1 else 'were'} gone already ({why})."


def _stdin_is_a_terminal() -> bool:
    """Whether standard input is a terminal; not when it was closed (`<&-`: None, or a closed
    file)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:
        return False


def storage_options_given(data_dir: Path | None, database_url: str | None) -> str:
    """The storage options a command was given on its command line, as a hint that names a
    command to run next must repeat them (" --data-dir D --database-url U", or ""): without
    them the next command reads another installation, or none. Those set in the environment
    (OPENPROFILES_DATA_DIR, ...) are left out: the next command reads them as this one did. A
    password in the URL is hidden (`shown_url`), as in every message."""
    import shlex

    given = []
    if data_dir is not None:
        given += ["--data-dir", shlex.quote(str(data_dir))]
    if database_url is not None:
        given += ["--database-url", shlex.quote(shown_url(database_url))]
    return "".join(f" {part}" for part in given)


def _database_url(ctx: click.Context, param: click.Parameter, url: str | None) -> str | None:
    """--database-url's value, checked for every command that takes it (`storage_options`),
    before the command does anything: one that is not the URL of a database OpenProfiles runs
    on, or is empty, is a usage error naming the option and what is wrong
    (settings.database_url_problem; never the URL, which may hold a password). Then the warning
    about a password on the command line."""
    if url is not None:
        problem = database_url_problem(url)
        if problem is not None:
            raise click.BadParameter(f"the URL {problem}.", ctx=ctx, param=param)
    return _warn_about_password_on_command_line(ctx, param, url)


def _warn_about_password_on_command_line(
    ctx: click.Context, param: click.Parameter, url: str | None
) -> str | None:
    """Warn on stderr, before the command runs, when --database-url carries a password (in its
    user part or a query parameter such as sslpassword): a command's arguments are in the
    process list, which every local user may read (ps), though the banner hides it. The
    environment is not (/proc/PID/environ is the owner's), nor libpq's ~/.pgpass or PGPASSWORD.
    Never names the password."""
    if (
        url is not None
        and ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.COMMANDLINE
        and shown_url(url) != url
    ):
        click.echo(
            "Warning: the --database-url option holds a password, which other local users can "
            "read in the process list (ps). Give the URL in OPENPROFILES_DATABASE_URL instead, "
            "or give a URL without a password and put the password in ~/.pgpass or "
            "PGPASSWORD (libpq reads them).",
            err=True,
        )
    return url


def settings_from_options(data_dir: Path | None, database_url: str | None, **more: Any) -> Settings:
    """The environment's settings with the command line's options on top; a setting that is
    not valid stops the command with its message (not a traceback whose message the logs
    withhold)."""
    try:
        return Settings.from_env().with_overrides(
            data_dir=data_dir, database_url=database_url, **more
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


# The exit status of a command stopped by Ctrl-C: 128 + SIGINT, as a shell reports it; by
# SIGTERM (`Terminated`), 128 + SIGTERM: its work was cut short (a loader's "load again").
# `serve` stopped either way exits 0 instead (serving._sigterm_stops): being stopped by its
# service manager is how a server ends, not a failure for systemd or a container runtime to
# report (its requests in flight answered, its database closed). It writes no `cli` line
# (NOT_AUDITED_COMMANDS); were it given one, exit 0 would read `result=ok`, which is right.
INTERRUPTED_STATUS = 130
TERMINATED_STATUS = 143


# What a refusal's name (`Refused.error`) looks like: an identifier in the AWS error types' form.
_ERROR_NAME = re.compile(r"[A-Z][A-Za-z0-9]{2,63}")


class Refused(click.ClickException):
    """A command's refusal (shown as click shows any: "Error: MESSAGE", exit status 1) that names
    itself for the audit trail (`_how_it_ended`): `error`, a fixed name in the form of an AWS
    error type ("NoInstallation", "FileUnreadable"), stable across wordings of the message,
    which is never written there (it may quote a file's path, a username, a customer's value).
    A plain ClickException was audited as `error=ClickException`, which told the reader nothing.
    A refusal that is a service's error says so with the ServiceError as its cause instead (its
    AWS error type)."""

    def __init__(self, message: str, *, error: str) -> None:
        if not _ERROR_NAME.fullmatch(error):
            raise ValueError(f"not an error name: {error!r}")
        super().__init__(message)
        self.error = error


# The names of the refusals (Refused.error) raised in more than one place.
NO_INSTALLATION = "NoInstallation"
DATABASE_UNUSABLE = "DatabaseUnusable"


class Terminated(KeyboardInterrupt):
    """SIGTERM (what systemd and Kubernetes send to stop a process, and `kill`'s default), raised
    where Ctrl-C raises KeyboardInterrupt while an audited command runs (`sigterm_as_ctrl_c`):
    the command stops as it does on Ctrl-C — a loader says what it had loaded and that loading
    again is safe, the connector ends after its last checkpoint, the audit line is written —
    instead of dying at once with none of that."""


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main
    thread, as SIGINT does (signals.sigterm_handled_by: where it may)."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    with sigterm_handled_by(terminate):
        yield


def interrupted(message: str) -> NoReturn:
    """End a loader stopped by Ctrl-C (or SIGTERM: `Terminated`) with `message` (what it had
    committed, and whether loading again is safe) on stderr and exit status 130 (128 + SIGINT,
    as a shell reports it; 143 for SIGTERM), instead of click's bare "Aborted!", which left the
    operator to guess both. Called while the interruption is being handled."""
    click.echo(message, err=True)
    handled = sys.exc_info()[1]
    terminated = handled is not None and _caused_by(handled, Terminated)
    raise click.exceptions.Exit(TERMINATED_STATUS if terminated else INTERRUPTED_STATUS)


def caused_by_ctrl_c(error: BaseException) -> bool:
    """Whether `error` is Ctrl-C (KeyboardInterrupt, or SIGTERM's `Terminated`) or an error it
    caused. The interrupt can come inside a database driver's call (the pool's ping of a
    PostgreSQL connection), which then refuses the half-used connection with an error of its
    own that reaches the command instead, the interrupt only its cause: the loader showed a
    traceback and exit status 1 rather than what it had loaded (`interrupted`)."""
    return _caused_by(error, KeyboardInterrupt)


def end_stopped_load(error: BaseException, *, file: Path, loaded: str, why_safe: str) -> None:
    """End a file loader that `error` stopped, when that is no bug, saying what it had loaded
    (`loaded`: "40 of 100 records of F were loaded") and that loading `file` again is safe
    (`why_safe`): Ctrl-C or SIGTERM (`interrupted`), or a database that cannot be written (a
    full disk, read-only, failing I/O: store.database.storage_failure), which used to end in a
    traceback whose message the logging rules withhold. Returns for any other error, for the
    caller to raise. The transaction under way is not counted: it was rolled back (a batch is
    one transaction on SQLite, store.chunks' bounded runs on PostgreSQL); those before it are
    committed."""
    if caused_by_ctrl_c(error):
        interrupted(
            f"Interrupted: {loaded}; the batch under way is not counted. Loading {file} again "
            f"is safe: {why_safe}."
        )
    reason = storage_failure_in(error)
    if reason is not None:
        raise Refused(
            f"Stopped: the database could not be written: {reason}. {loaded[:1].upper()}"
            f"{loaded[1:]}; the batch under way is not counted. Once it can be written again, "
            f"loading {file} again is safe: {why_safe}.",
            error="DatabaseNotWritable",
        ) from None


def storage_failure_in(error: BaseException) -> str | None:
    """Why the database cannot be written (store.database.storage_failure), when `error` or an
    error it came from (a service's error raised from the driver's) says so; else None."""
    from openprofiles.store.database import storage_failure

    return next(filter(None, map(storage_failure, _chain(error))), None)


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(seen, kind) for seen in _chain(error))


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and the errors it came from (its cause, else its context), each once: a chain
    can loop (an error raised again from one raised while handling it)."""
    seen: BaseException | None = error
    met: set[int] = set()
    while seen is not None and id(seen) not in met:
        met.add(id(seen))
        yield seen
        seen = seen.__cause__ or seen.__context__


@dataclass(frozen=True)
class Audited:
    """How a command is audit-logged: `domain` names its parameter that holds the domain;
    `only_with` a flag without which a run is not logged (it then changes nothing and prints no
    personal data)."""

    domain: str = "domain_name"
    only_with: str | None = None


# The commands whose runs are audit-logged (audit.cli_command), by their path in the command
# tree: each that changes stored state (the database, the keyring) or sends records on, and
# each that prints stored personal data. Every other command is in NOT_AUDITED_COMMANDS; a test
# (tests/cli/test_cli_audit_log) checks that each command of the tree is in one of the two.
AUDITED_COMMANDS: dict[str, Audited] = {
    # Changing state.
    "credentials create": Audited(),
    "credentials delete": Audited(),
    "credentials scope": Audited(),
    "keys create": Audited(),
    "keys disable": Audited(),
    "keys enable": Audited(),
    "keys rotate": Audited(),
    "users create": Audited(),
    "users set-password": Audited(),
    "users set-role": Audited(),
    "users scope": Audited(),
    "users delete": Audited(),
    "users unlock": Audited(),
    "dlq retry": Audited(),
    # Sends the domain's dead letters, records and all, to its SQS queue.
    "dlq resend": Audited(),
    "dlq purge": Audited(),
    # Without --confirm it only counts the rows it would delete.
    "domains drop-unreadable": Audited(domain="name", only_with="confirm"),
    "ingest objects": Audited(),
    "ingest contact-records": Audited(),
    "instances associate": Audited(),
    "instances send-kept": Audited(),
    "instances purge-unrouted": Audited(),
    "flows run": Audited(),
    # The long-running loaders: one line when they stop.
    "flows watch": Audited(),
    "connectors kinesis": Audited(),
    "merges undo": Audited(),
    "matches run-job": Audited(),
    "matches run-due": Audited(),
    # Printing stored personal data.
    # A dead letter's reason quotes the record's values (errors.shown_value), sealed at rest.
    "dlq list": Audited(),
    # The record itself.
    "dlq show": Audited(),
    # The values of the profile keys that moved (phone numbers, emails).
    "merges show": Audited(),
    # Only --show-values prints the matched values; otherwise profile ids and attribute names.
    "matches explain": Audited(only_with="show_values"),
    # Usernames are staff's personal data (often emails), sealed at rest (users.service).
    "users list": Audited(),
}
# The commands not audit-logged: they change nothing and print no personal data, only names,
# ids and counts (access key ids and roles, key ids, instance ARNs, profile and match ids,
# Splink's weights with no value). And `serve`: the server audit-logs every request it answers
# itself; what it does before is on its output (the schema brought up to date), and
# --first-run-admin's first admin credential and user (made once, their secrets written to
# owner-only files) have audit lines of their own (first_run, audit.first_run_admin).
NOT_AUDITED_COMMANDS = frozenset(
    {
        "serve",
        "credentials list",
        "keys list",
        "instances list",
        "instances unrouted",
        "merges list",
        "matches list",
        "matches explain-ml",
    }
)


def commands_of(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every command under `group` that is not a group itself, with its path ("dlq purge")."""
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from commands_of(command, f"{path} ")
        else:
            yield path, command


# The characters `shown_text` escapes besides the controls (Unicode category Cc: C0, DEL and
# C1): the line and paragraph separators, which log viewers and str.splitlines take for line
# ends, and the bidirectional overrides and isolates, which make a terminal show text in
# another order than it is (U+202E turns "txt.exe" around).
_ESCAPED_FORMATTING = frozenset(
    {"\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
)


def shown_text(text: str) -> str:
    """`text` fit to print in one line of a message: each control character (ESC, CR, LF, tab,
    the other C0 and C1 ones, DEL) and each of _ESCAPED_FORMATTING written as Python writes it
    in a string's repr (\\x1b, \\r, \\n, \\u202e); every other character, letters of any
    script included, as it is. A name given on the command line is quoted by the messages that
    refuse it (a key, an access key id, a domain): raw, its escape sequences reached the
    operator's terminal (retitling it, hiding text) and its line ends forged lines in a log of
    the command's output. `EscapedErrors` applies it to every error a command ends with."""
    if text.isprintable():  # the usual case, in one pass in C
        return text
    return "".join(
        repr(char)[1:-1]
        if unicodedata.category(char) == "Cc" or char in _ESCAPED_FORMATTING
        else char
        for char in text
    )


class EscapedErrors(click.Group):
    """The root command's group: the message of every error a command ends with (click's usage
    errors, `Refused`, a service's refusal) is shown through `shown_text`. The messages quote
    what they were given, from the command line or read from the store (names, ids, a file's
    path), so it is done here, once, rather than at each message, where one would be missed.
    The messages are written as single lines: an escaped line end is one of what they quote."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # The root's own options (an unknown one: "No such option: --X") are parsed here.
        with _errors_escaped():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        # A subcommand's options and arguments are parsed, and it runs, in here.
        with _errors_escaped():
            return super().invoke(ctx)


@contextmanager
def _errors_escaped() -> Iterator[None]:
    try:
        yield
    except click.ClickException as exc:
        if isinstance(exc.message, str):
            # click types the message Final, but reads it only when it shows the error, after
            # this: the one place where every message passes.
            exc.message = shown_text(exc.message)  # type: ignore[misc]
        raise


class Utf8Text(click.ParamType):
    """Text that can be stored: a name or id (a domain's, a user's, a key's, a message's...)
    as the store takes it. Python gives the bytes of an argument that are not UTF-8 as lone
    surrogates (PEP 383), which no database driver nor UTF-8 encoder takes: refused here, a
    usage error naming the option, rather than a traceback from deep in the store."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        # Imported here: json_text brings orjson, which a command's start need not load.
        from openprofiles.json_text import has_lone_surrogate

        if isinstance(value, str) and has_lone_surrogate(value):
            # The value is not echoed: it cannot be printed as given, and may be personal.
            self.fail(
                "it is not valid UTF-8 text (bytes in another encoding, or binary).", param, ctx
            )
        return value


UTF8_TEXT = Utf8Text()


def text_options_utf8(root: click.Group) -> None:
    """Give every plain text argument and option of every command under `root` the type
    UTF8_TEXT: each reaches the store or a key's derivation as it is, so one that is not UTF-8
    is a usage error, whichever command it is of. File paths (click.Path) keep their own type:
    a file name need not be UTF-8. Idempotent."""
    for _, command in commands_of(root):
        for param in command.params:
            if isinstance(param.type, click.types.StringParamType):
                param.type = UTF8_TEXT


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan, which every comparison with its bounds lets
    through (a `--every nan` would wait no time at all, a busy loop)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail("nan is not a number of seconds.", param, ctx)
        return number


def http_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An option's http(s) URL with a host (an endpoint to call), or None when not given; a
    usage error naming the option otherwise, before any client is built with it. The test is
    the endpoint settings' (OPENPROFILES_*_ENDPOINT_URL: settings.is_http_url)."""
    if value is None:
        return None
    if not is_http_url(value):
        raise click.BadParameter(
            "give an http:// or https:// URL with a host, e.g. https://kinesis.eu-west-1."
            "amazonaws.com or http://localhost:4566.",
            ctx=ctx,
            param=param,
        )
    return value


def audit_commands(root: click.Group) -> None:
    """Make each command of AUDITED_COMMANDS under `root` write its audit line when it ends: its
    callback wrapped, once, as every run of it passes through its callback. A run refused before
    (its options not valid) did nothing and is not logged. Idempotent."""
    for path, command in commands_of(root):
        how = AUDITED_COMMANDS.get(path)
        callback = command.callback
        if how is None or callback is None or getattr(callback, "audited_as", None) == path:
            continue
        command.callback = _audited(callback, path, how)


def _audited(callback: Callable[..., Any], path: str, how: Audited) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **params: Any) -> Any:
        # SIGTERM stops an audited command as Ctrl-C does, its audit line written.
        with sigterm_as_ctrl_c():
            return _run_audited(callback, path, how, args, params)

    run.audited_as = path  # type: ignore[attr-defined]
    return run


def _run_audited(
    callback: Callable[..., Any],
    path: str,
    how: Audited,
    args: tuple[Any, ...],
    params: dict[str, Any],
) -> Any:
    from openprofiles import audit

    if how.only_with is not None and not params.get(how.only_with):
        return callback(*args, **params)
    # The data dir as the command reads it (its option, else the environment): where the
    # audit log is by default. Settings that are not valid refuse the run here, as the
    # command itself would, before it did anything.
    settings = settings_from_options(params.get("data_dir"), None)
    with _audit_file(settings):
        result, error = audit.CLI_OK, None
        try:
            return callback(*args, **params)
        except BaseException as exc:
            result, error = _how_it_ended(exc)
            raise
        finally:
            # Only the domain of the parameters: the others may be file paths, usernames,
            # keys.
            audit.cli_command(
                path,
                uid=os.getuid() if hasattr(os, "getuid") else None,
                # Under sudo the uid is 0: who ran sudo is what the trail must say.
                sudo_uid=settings.sudo_uid,
                domain_name=params.get(how.domain),
                result=result,
                error=error,
            )


@contextmanager
def _audit_file(settings: Settings) -> Iterator[None]:
    """The audit log's file (Settings.audit_log_file) appended to while an audited command
    runs; nothing when it is off.

    A file that cannot be opened refuses the command, before it does anything, with the reason
    and the setting: an audited command is one whose run must leave a line in the trail, and a
    warning scrolled past on a terminal would let a purge or a `dlq show` go unrecorded. Who
    must run without it says so with OPENPROFILES_AUDIT_LOG=off, a choice made in the open.

    Without its data dir there is no installation, and every audited command refuses it having
    done nothing (require_installation): nothing is created for it here either (a command
    creates no data dir)."""
    from openprofiles import logging_setup

    path = settings.audit_log_file
    if path is None or not settings.data_dir.is_dir():
        yield
        return
    with logging_setup.audit_to(open_audit_file(path)):
        yield


def open_audit_file(path: Path) -> logging_setup.AuditFileHandler:
    """A handler appending to the audit log `path` (created owner-only when it does not exist),
    or a ClickException naming the file, the reason and the setting."""
    from openprofiles import logging_setup

    try:
        return logging_setup.AuditFileHandler(path)
    except OSError as exc:
        raise Refused(
            f"Cannot append to the audit log {path.absolute()}: "
            f"{exc.strerror or type(exc).__name__}. Set OPENPROFILES_AUDIT_LOG to a file this "
            "user may create or append to (in a directory that exists), or to off to keep no "
            "audit log file.",
            error="AuditLogUnusable",
        ) from None


def _how_it_ended(exc: BaseException) -> tuple[str, str | None]:
    """(audit.CLI_*, the error's type) of a command that raised `exc`. Its type only: a message
    may quote what the command was given (a username, a file's line)."""
    from openprofiles import audit
    from openprofiles.errors import ServiceError

    if isinstance(exc, SystemExit | click.exceptions.Exit):
        status = exc.code if isinstance(exc, SystemExit) else exc.exit_code
        if not status:
            return audit.CLI_OK, None
        if status in (INTERRUPTED_STATUS, TERMINATED_STATUS):
            return audit.CLI_INTERRUPTED, None
        return audit.CLI_FAILED, type(exc).__name__
    if caused_by_ctrl_c(exc):
        return audit.CLI_INTERRUPTED, None
    # A refusal that names itself (its name, never its message).
    if isinstance(exc, Refused):
        return audit.CLI_FAILED, exc.error
    # A service's refusal, said by the command as its message: the AWS error type it has.
    cause = exc.__cause__ if isinstance(exc, click.ClickException) else exc
    if isinstance(cause, ServiceError):
        return audit.CLI_FAILED, cause.code
    # click's own refusals keep their names: UsageError (BadParameter, a kind of it) says the
    # command line did not hold together, so nothing was done, and which option is in the
    # message only; Abort, that a confirmation was declined.
    return audit.CLI_FAILED, type(exc).__name__


def warn_about_unknown_variables() -> None:
    """A warning on stderr for each OPENPROFILES_* variable no setting reads, with the name it
    is probably a misspelling of: ignored silently, OPENPROFILES_DATABSE_URL left the server on
    a new, empty database in the data dir."""
    from openprofiles.settings import unknown_variables

    for name, close in unknown_variables():
        meant = f" (did you mean {close}?)" if close else ""
        click.echo(
            f"Warning: {shown_text(name)} is not a setting of OpenProfiles{meant}; it is ignored.",
            err=True,
        )


def require_installation(settings: Settings, *, keyring_only: bool = False) -> None:
    """Stop the command, creating nothing, unless the settings name an installation: its
    database (on SQLite a file, elsewhere one holding the schema) and the keyring in the data
    dir. `keyring_only`: the keyring commands, which need no more (`keys disable` must work
    while the database is out of reach).

    Every command but `serve` works on an installation `serve` made. Opening the services makes
    whatever is missing, so a command run from another directory (the data dir defaults to
    .data there) used to make a new, empty installation, exit 0 and print an access key no
    server knew. A database error (PostgreSQL out of reach) is raised as it is, for the caller
    to say which and why (`open_services`)."""
    refuse_root_in_anothers_data_dir(settings)
    keyring = settings.keyring_path.absolute()
    if keyring_only:
        if not keyring.exists():
            raise Refused(
                f"There is no OpenProfiles installation in the data dir "
                f"{_shown_data_dir(settings)}: {keyring} does not exist. {_POINT_AT_IT}",
                error=NO_INSTALLATION,
            )
        return
    where = shown_database(settings)
    sqlite_file = settings.sqlite_file
    if sqlite_file is not None and not sqlite_file.exists():
        nor = "" if keyring.exists() else f", nor does {keyring}"
        raise Refused(
            f"There is no OpenProfiles installation in the data dir {_shown_data_dir(settings)}: "
            f"{sqlite_file.absolute()} does not exist{nor}. {_POINT_AT_IT}",
            error=NO_INSTALLATION,
        )
    if not settings.is_sqlite and not _holds_schema(settings):
        raise Refused(
            f"The database {where} holds no OpenProfiles installation (none of its tables). "
            f"{_POINT_AT_IT}",
            error=NO_INSTALLATION,
        )
    if not keyring.exists():
        # `serve` makes the keyring with the database: the database is there, the keyring was
        # lost or this data dir is not the server's. A new one would not open its data.
        raise Refused(
            f"The keyring {keyring} does not exist, but the database {where} does. Give the data "
            "dir of the server that uses this database with --data-dir DIR or "
            "OPENPROFILES_DATA_DIR; or copy keyring.json from it (every server sharing a "
            "database needs the same keyring), or restore it from a backup.",
            error="KeyringMissing",
        )


_POINT_AT_IT = (
    "Commands other than `openprofiles serve` create none: give the data dir the server uses "
    "with --data-dir DIR or OPENPROFILES_DATA_DIR (and its database with --database-url or "
    "OPENPROFILES_DATABASE_URL when it is not the SQLite file in the data dir). A deployment set "
    "up as docs/operations.md says keeps them in its settings file, which its wrapper "
    "`openprofiles-admin ...` reads (`sudo -u USER openprofiles ...` drops them). `openprofiles "
    "serve --first-run-admin` creates a new installation."
)


def refuse_root_in_anothers_data_dir(settings: Settings) -> None:
    """Stop a command run as root on an installation another user's server uses: its keyring
    belongs to that user (the server made it, running as them). A file root writes in the
    data dir (keyring.json by `keys create`, the SQLite database's journal, the audit log) is
    root's from then on, which that server can no longer read or write: it answered every
    request 500 until the file was given back. An installation root's server made (a container
    running as root, whatever owns the volume) is root's to use, and another user's run is
    left to the file permissions."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        owner = settings.keyring_path.stat().st_uid
    except OSError:
        return  # no installation yet: `serve` makes it, as whoever runs it
    if owner == 0:
        return
    try:
        import pwd

        name: str | None = pwd.getpwuid(owner).pw_name
    except (ImportError, KeyError):
        name = None
    raise Refused(
        f"The installation in {_shown_data_dir(settings)} belongs to the user "
        f"{name or f'with the id {owner}'} (its keyring's owner), and this command runs as "
        "root: files it wrote there would be root's, and the server running as that user could "
        f"no longer use them. {_run_as(owner, name)}",
        error="InstallationOfAnotherUser",
    )


def _run_as(uid: int, name: str | None) -> str:
    """How to run the refused command again as the user `uid` (`name`), with its settings.

    Not `sudo -u USER openprofiles ...`, which it used to say: sudo resets the environment, so
    the OPENPROFILES_* variables that named this installation (the deployment's settings file)
    were gone, and the command read another installation, or none. runuser keeps the
    environment, as sudo does when told to (--preserve-env), and both keep the working
    directory (where the default data dir, .data, is). The deployment docs/operations.md
    describes has a wrapper for it, which reads the settings file itself."""
    import shlex
    import shutil

    if name is not None and shutil.which("runuser"):
        as_user = f"runuser -u {shlex.quote(name)} -- openprofiles ..."
    else:  # no runuser (not Linux), or no name for runuser to take
        who = shlex.quote(name) if name is not None else f"'#{uid}'"
        as_user = f"sudo --preserve-env -u {who} openprofiles ..."
    return (
        f"Run it as that user with this command's settings: `{as_user}` keeps its environment "
        "(`sudo -u USER openprofiles ...` drops the OPENPROFILES_* variables, and the command "
        "would read another installation, or none). A deployment set up as docs/operations.md "
        "says has a wrapper for this, `openprofiles-admin ...`, which also reads the service's "
        "settings file."
    )


def _shown_data_dir(settings: Settings) -> str:
    """The data dir's absolute path, saying when it is only the default (.data in the current
    directory): the usual way to reach the wrong one."""
    from openprofiles.settings import DEFAULT_DATA_DIR

    shown = str(settings.data_dir.absolute())
    if settings.data_dir == DEFAULT_DATA_DIR and not settings.data_dir_given:
        shown += " (the default: .data in the current directory)"
    return shown


def _holds_schema(settings: Settings) -> bool:
    """Whether the (PostgreSQL) database holds OpenProfiles' schema: a --database-url naming an
    empty database (its server's `postgres` one, say) would otherwise get a new schema, and the
    command's data. Alembic's version table alone could be another application's; `domain` is
    made by the first migration."""
    from sqlalchemy import inspect

    from openprofiles.store.database import Database

    database = Database(settings.effective_database_url)
    try:
        with database.read() as conn:
            tables = inspect(conn)
            return tables.has_table("alembic_version") and tables.has_table("domain")
    finally:
        database.dispose()


@contextmanager
def services_open(settings: Settings) -> Iterator[Services]:
    """`open_services`, disposed of when the block ends. Disposing closes the SQLite
    checkpointer too, which then empties the write-ahead log that an erasure asked to empty
    (Tx.erased): its thread, a daemon, would otherwise die with the command before it could."""
    services = open_services(settings)
    try:
        yield services
    finally:
        services.database.dispose()


def open_services(settings: Settings, *, create: bool = False) -> Services:
    """The application's services (database brought up to date, key manager) for a command; a
    data dir, database or keyring that cannot be used stops it with a message saying which and
    why (a traceback's message would be withheld by the logging rules). Only with `create`
    (`serve`) are a data dir, keyring and database that do not exist yet made
    (`require_installation`)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from openprofiles.app import build_services
    from openprofiles.crypto.errors import KeyringError, KeyUnusable
    from openprofiles.errors import ServiceError

    where = shown_database(settings)
    if where == _NOT_A_URL:
        raise Refused(f"Cannot open the database {where}.", error=DATABASE_UNUSABLE)
    try:
        if create:
            refuse_root_in_anothers_data_dir(settings)  # require_installation does, otherwise
        else:
            require_installation(settings)
        return build_services(settings)
    except (KeyringError, KeyUnusable) as exc:
        raise Refused(str(exc), error="KeyringUnusable") from None
    except ServiceError as exc:
        # The schema's upgrade waited in vain for the writer lock (store.writer_lock), say.
        raise click.ClickException(exc.message) from exc
    except OSError as exc:
        raise Refused(
            f"Cannot use {exc.filename or settings.data_dir}: "
            f"{exc.strerror or type(exc).__name__}.",
            error="DataDirUnusable",
        ) from None
    except CommandError as exc:
        raise Refused(_schema_not_updated(exc, where), error="SchemaNotUpdated") from None
    except (SQLAlchemyError, ModuleNotFoundError) as exc:
        if isinstance(exc, ModuleNotFoundError):
            reason = f"its driver is not installed (no module {exc.name})"
        else:
            # At start no statement carries data: the driver's first line says what failed.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            reason = _without_misread_password(reason, settings.effective_database_url)
        raise Refused(
            f"Cannot open the database {where}: {reason}", error=DATABASE_UNUSABLE
        ) from None


def _without_misread_password(reason: str, url: str) -> str:
    """The driver's reason without the part of the password SQLAlchemy took for the host.
    SQLAlchemy ends a password at its first '@' and reads the rest as the host name, so the
    driver's "failed to resolve host 'PW@127.0.0.1'" quoted the password's tail."""
    from sqlalchemy import make_url

    host = make_url(url).host
    if not host or "@" not in host:
        return reason
    tail = host.rsplit("@", 1)[0] + "@"
    return (
        reason.replace(tail, "***@") + " (the password has an '@' in it, which a URL writes as %40)"
    )


def _schema_not_updated(exc: Exception, where: str) -> str:
    """Why Alembic could not bring the schema up to date. Its messages name revisions and the
    version table, never stored data, so they are quoted (the logging rules would withhold
    them)."""
    from alembic.script.revision import ResolutionError

    from openprofiles import __version__
    from openprofiles.store.migrate import head_revision

    cause = exc.__cause__
    if isinstance(cause, ResolutionError):
        # The database's revision is not among this build's migrations. This build's newest is
        # named too: two builds of one version differ by it (`openprofiles --version`).
        return (
            f"The database {where} is at schema revision {cause.argument}, which this version "
            f"of OpenProfiles ({__version__}, database schema up to {head_revision()}) does not "
            "know: a newer version upgraded it. Run that version, or restore the backup taken "
            "before the upgrade."
        )
    return (
        f"Cannot bring the schema of the database {where} up to date: {exc}. If another "
        "OpenProfiles process was starting on the same database, start this one again once "
        "that one is running."
    )


def shown_database(settings: Settings) -> str:
    """The database the settings name, fit to print (its password hidden). A SQLite file is
    named by its absolute path, as the data dir is: a relative one (the default data dir .data,
    a relative --data-dir or sqlite:///file) read sqlite:///.data/... beside an absolute data
    dir, and did not say which directory it was relative to."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = settings.effective_database_url
    try:
        parsed = make_url(url)
    except (SQLAlchemyError, ValueError):  # ValueError: a port that is not a number
        return _NOT_A_URL
    sqlite_file = settings.sqlite_file
    # A `file:` URI (?uri=true) is the driver's to read, not a path: left as written.
    if sqlite_file is not None and not sqlite_file.is_absolute() and "uri" not in parsed.query:
        url = parsed.set(database=str(sqlite_file.absolute())).render_as_string(hide_password=False)
    return shown_url(url)


_NOT_A_URL = "(the database URL is not one: dialect://user@host/database)"


# Query parameters of a database URL that carry a secret (libpq's password and sslpassword,
# drivers' tokens and keys); matched by part of the name, so a new one is hidden too.
_SECRET_QUERY_VALUE = re.compile(r"[?&][^=&]*(?:pass|secret|token|key)[^=&]*=([^&]*)", re.I)


def shown_url(url: str) -> str:
    """A database URL fit to print: its password hidden, in the user part or the query.

    Worked on the text as written, not on SQLAlchemy's reading of it: SQLAlchemy ends the
    password at its first '@' and reads the rest as the host, so a password with an '@' that
    is not percent-encoded showed its tail (bob:***@PW@127.0.0.1). Hidden: everything from the
    user name's ':' to the last '@', and the values of the query's secret parameters, both found
    in the text as given; where an '@' or a '?' makes them overlap, more is hidden, never less."""
    hidden = [False] * len(url)
    start = url.find("://") + 3 if "://" in url else len(url)
    at = url.rfind("@", start)
    colon = url.find(":", start, at) if at != -1 else -1
    if colon != -1:
        hidden[colon + 1 : at] = [True] * (at - colon - 1)
    for match in _SECRET_QUERY_VALUE.finditer(url):
        hidden[match.start(1) : match.end(1)] = [True] * (match.end(1) - match.start(1))
    shown = []
    for position, char in enumerate(url):
        if not hidden[position]:
            shown.append(char)
        elif position == 0 or not hidden[position - 1]:
            shown.append("***")
    return "".join(shown)


def matching_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The value of a `--matching VALUE` option; `-` reads it from standard input instead (its
    first line), asked for without echo at a terminal. A customer's email or phone number on
    the command line stays in the shell's history and shows in `ps` to every local user. An
    empty or blank value is a usage error: it matches no record, and `--matching ''` (an unset
    shell variable, say) reported none found as if the customer had none."""
    if value is not None and value != "-" and not value.strip():
        raise click.BadParameter(
            "an empty value matches nothing; give the customer's value, or - to read it from "
            "standard input.",
            ctx=ctx,
            param=param,
        )
    if value != "-":
        return value
    if sys.stdin.isatty():
        text = click.prompt("The customer's value", hide_input=True, err=True)
    else:
        text = sys.stdin.readline().rstrip("\r\n")
    if not text.strip():
        raise click.BadParameter("standard input gave no value.", ctx=ctx, param=param)
    return str(text)


# How a `--matching VALUE` option's value is compared with a record's (openprofiles.held_values),
# in its help.
HOW_VALUES_COMPARE = (
    "An email address matches in any letter case and a phone number in any format (one without "
    "a country code is read in OPENPROFILES_DEFAULT_PHONE_REGION), each also inside a longer "
    "text; any other value must be a whole field, exactly."
)


def held_value(text: str, settings: Settings) -> HeldValue:
    """The customer's value of a `--matching VALUE` option (openprofiles.held_values), phone
    numbers read as the server reads them; a usage error when it is empty."""
    from openprofiles.held_values import HeldValue

    try:
        return HeldValue(text, settings.default_phone_region)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
