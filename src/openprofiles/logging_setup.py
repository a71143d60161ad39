"""Logging without personal data: an exception is printed as its type and its traceback's frames,
never with its message (unless its type is known to carry none) nor its frames' local
variables, whichever handler or formatter prints it.

Exception messages quote data: `int("alice@example.com")` fails with the value in its message,
and SQLAlchemy's StatementError puts the statement's parameters in `str()`. `install()` (the
`openprofiles` command runs it for `serve` and every other command) wraps the log-record
factory, so every record is made safe once, where it is created:

* its exception becomes text (`exc_text`, which every standard formatter prints as it is) and
  the exception object is dropped (`exc_info`), so no handler can reach its message or locals;
* an exception passed as the message or as one of its arguments becomes its description.

Uncaught exceptions, of the main thread and of other threads, are printed the same way.

Where records go: `log_to_stderr` (every command) and `serving_log_config` (`serve`, for uvicorn,
which applies it in each of its processes) print them on stderr with their time, level and
logger name, from WARNING; a server prints OpenProfiles' and uvicorn's INFO records too (what
the background tasks did, uvicorn's start and stop), not other libraries' (unvetted text).
A server's level is OPENPROFILES_LOG_LEVEL (Settings.log_level, INFO by default): DEBUG adds
OpenProfiles' DEBUG records (never uvicorn's, whose DEBUG and TRACE lines name each client's
address; its access log stays off, as serving.run has it), WARNING and ERROR leave out the
records below them, uvicorn's and the audit lines' on stderr included (the audit log file
still gets every audit line). No record carries a personal value, at any level.

The audit lines (logger `openprofiles.audit`, INFO) are appended to a file as well, the
audit log (OPENPROFILES_AUDIT_LOG, default DATA_DIR/audit.log): `serving_log_config` gives the
server's every process its `AuditFileHandler`, and `audit_to` gives one to a command while it
runs (cli_support.audit_commands), whose stderr shows none (WARNING and up only). The file is
created owner-only, each line appended with one write (O_APPEND: the server's processes and
the commands write to it at once), and opened again when logrotate moves it away; a line is the
UTC time (ISO 8601), the process id and the audit text.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

WITHHELD = "(message withheld: it may carry personal data)"
# Types whose messages never quote data. Other types can declare the same by setting the class
# attribute `message_has_no_personal_data = True`.
SAFE_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,
    KeyboardInterrupt,
    MemoryError,
    RecursionError,
    TimeoutError,
)

_previous: dict[str, Any] = {}


def message_is_safe(exc: BaseException) -> bool:
    return isinstance(exc, SAFE_TYPES) or (
        getattr(type(exc), "message_has_no_personal_data", False) is True
    )


def _type_name(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def describe(exc: BaseException) -> str:
    """The exception's type — with the driver's exception type for SQLAlchemy's DBAPIError,
    which wraps it in `orig` — and its message only when that is known to be safe."""
    name = _type_name(type(exc))
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        name += f" ({_type_name(type(orig))})"
    if isinstance(exc, OSError) and exc.strerror and not message_is_safe(exc):
        # The system's reason ("Address already in use") carries no data; the file name might.
        return f"{name}: [Errno {exc.errno}] {exc.strerror} (file name, if any, withheld)"
    if not message_is_safe(exc):
        return f"{name}: {WITHHELD}"
    message = str(exc)
    return f"{name}: {message}" if message else name


def render_exception(exc: BaseException) -> str:
    """Like `traceback.format_exception`, with `describe` in place of each exception's line:
    the chain (cause, context), each traceback's frames and source lines, no locals."""
    lines: list[str] = []
    _render(exc, lines, set())
    return "".join(lines).rstrip("\n")


def _render(exc: BaseException, lines: list[str], seen: set[int]) -> None:
    seen.add(id(exc))
    cause, context = exc.__cause__, exc.__context__
    if cause is not None and id(cause) not in seen:
        _render(cause, lines, seen)
        lines.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif context is not None and not exc.__suppress_context__ and id(context) not in seen:
        _render(context, lines, seen)
        lines.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    if exc.__traceback__ is not None:
        lines.append("Traceback (most recent call last):\n")
        frames = traceback.StackSummary.extract(
            traceback.walk_tb(exc.__traceback__), capture_locals=False
        )
        lines.extend(frames.format())
    # Notes (add_note) are free text too: left out with the message.
    lines.append(describe(exc) + "\n")
    if isinstance(exc, BaseExceptionGroup):
        for number, member in enumerate(exc.exceptions, 1):
            if id(member) not in seen:
                lines.append(f"\n[sub-exception {number} of {_type_name(type(exc))}]\n")
                _render(member, lines, seen)


def make_record_safe(record: logging.LogRecord) -> None:
    if record.exc_info:
        exc = record.exc_info[1]
        if exc is not None:
            record.exc_text = render_exception(exc)
            # Read by `_not_a_connection_an_interruption_broke`: the exception is gone after this.
            record.openprofiles_interrupted = _interrupted(exc)
        record.exc_info = None
    if isinstance(record.msg, BaseException):
        record.msg = describe(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(describe(a) if isinstance(a, BaseException) else a for a in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {
            k: describe(v) if isinstance(v, BaseException) else v for k, v in record.args.items()
        }


def _safe_factory(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        make_record_safe(record)
        return record

    make.openprofiles_safe = True  # type: ignore[attr-defined]
    return make


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(render_exception(exc) + "\n")


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "unknown"
    sys.stderr.write(f"Exception in thread {name}:\n{render_exception(args.exc_value)}\n")


def installed() -> bool:
    return getattr(logging.getLogRecordFactory(), "openprofiles_safe", False) is True


# The AWS SDK logs whole requests and responses at DEBUG: a KMS data key in clear (Decrypt's
# and GenerateDataKey's Plaintext), every dead letter sent to SQS, every record read from
# Kinesis or S3. Its loggers are held at WARNING, whatever the root's level: an application
# that embeds create_app under logging.basicConfig(level=DEBUG) must not print the keys that
# seal its customers' data. (A level set on them after `install` is the setter's own call.)
SDK_LOGGERS = ("botocore", "boto3", "s3transfer")


def install() -> None:
    """Make every log record and every uncaught exception printed from now on safe (see the
    module's docstring), and keep the AWS SDK's DEBUG records (`SDK_LOGGERS`) out. Idempotent."""
    if installed():
        return
    _previous["factory"] = logging.getLogRecordFactory()
    _previous["excepthook"] = sys.excepthook
    _previous["threading_excepthook"] = threading.excepthook
    _previous["sdk_levels"] = {name: logging.getLogger(name).level for name in SDK_LOGGERS}
    logging.setLogRecordFactory(_safe_factory(_previous["factory"]))
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    for name in SDK_LOGGERS:
        sdk = logging.getLogger(name)
        # Its own level, not the effective one: NOTSET follows the root, which may be lowered
        # later (a test runner capturing DEBUG, an application's basicConfig).
        if sdk.level < logging.WARNING:
            sdk.setLevel(logging.WARNING)


def uninstall() -> None:
    """Put back what `install` replaced (tests)."""
    if not installed():
        return
    logging.setLogRecordFactory(_previous.pop("factory"))
    sys.excepthook = _previous.pop("excepthook")
    threading.excepthook = _previous.pop("threading_excepthook")
    for name, level in _previous.pop("sdk_levels").items():
        logging.getLogger(name).setLevel(level)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StderrHandler(logging.StreamHandler):
    """A handler writing to whatever `sys.stderr` is when a record comes (as logging's own last
    resort does): a test runner that replaces stderr for a while is never left with a handler
    holding its closed stream."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """The stream is always the current stderr."""


# The loggers a server prints from its level (OPENPROFILES_LOG_LEVEL, INFO by default: a name
# of settings.LOG_LEVELS; uvicorn's have their own); every other one prints from WARNING, the
# root's level.
SERVING_LOGGERS = ("openprofiles",)


def _uvicorn_level(level: str) -> str:
    """uvicorn's loggers' level at the server's `level`: never below INFO, since uvicorn's
    DEBUG and TRACE records ("HTTP connection made") name each client's address."""
    return level if logging.getLevelName(level) > logging.INFO else "INFO"


def log_to_stderr(*, serving: bool = False, level: str = "INFO") -> None:
    """Print records on stderr with their time, level and logger name (without a handler,
    Python printed a WARNING's message alone and dropped every INFO). From WARNING, or, for a
    server (`serving`), OpenProfiles' records from `level` (OPENPROFILES_LOG_LEVEL, INFO by
    default): a one-off command says what it did on stdout, where scripts read it. Idempotent;
    other handlers (a test runner's) are left alone."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    # The handler's own level, not only the loggers': whoever lowers the root's level (a test
    # runner capturing DEBUG) must not turn a command's stderr into other libraries' INFO. Set
    # either way: a command run after a server in one process must not go on printing INFO.
    handler.setLevel(level if serving else logging.WARNING)
    for existing in list(handler.filters):
        handler.removeFilter(existing)
    handler.addFilter(_not_a_connection_an_interruption_broke)
    if serving:
        handler.addFilter(_from_info_only_for_vetted_loggers)
    for name in SERVING_LOGGERS:
        logging.getLogger(name).setLevel(level if serving else logging.NOTSET)


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt (Ctrl-C, or SIGTERM as cli_support.Terminated) is among the
    errors `exc` came from (causes and contexts, each once)."""
    pending, met = [exc], set()
    while pending:
        seen = pending.pop()
        if id(seen) in met:
            continue
        met.add(id(seen))
        if isinstance(seen, KeyboardInterrupt):
            return True
        pending.extend(e for e in (seen.__cause__, seen.__context__) if e is not None)
    return False


def _not_a_connection_an_interruption_broke(record: logging.LogRecord) -> bool:
    """Leaves out SQLAlchemy's pool's error that it could not reset a connection (roll it back
    as it went back to the pool) when an interruption caused it: Ctrl-C or SIGTERM raised in the
    middle of a PostgreSQL statement leaves the connection broken, and the stopped command's
    message says what it had done; a traceback of the failed rollback before it only alarms."""
    return not (
        record.name.startswith("sqlalchemy.pool")
        and getattr(record, "openprofiles_interrupted", False)
    )


def _from_info_only_for_vetted_loggers(record: logging.LogRecord) -> bool:
    """A server's records below WARNING (INFO, DEBUG) are printed from OpenProfiles' and
    uvicorn's loggers only."""
    if record.levelno >= logging.WARNING:
        return True
    return record.name.split(".")[0] in {*SERVING_LOGGERS, "uvicorn"}


def serving_log_config(
    audit_log: os.PathLike[str] | str | None = None, *, level: str = "INFO"
) -> dict[str, Any]:
    """`log_to_stderr(serving=True, level=level)` as uvicorn's `log_config`, which uvicorn
    applies in the supervising process and in each worker it starts: one stderr handler, one
    format, for OpenProfiles' records (from `level`, OPENPROFILES_LOG_LEVEL), uvicorn's (from
    INFO, or `level` when higher: start, stop, failed requests) and other libraries' (from
    WARNING: their INFO messages are text nobody has checked for data). With `audit_log`, the
    audit lines are appended to that file too (`AuditFileHandler`), whatever `level`, and
    printed on stderr when `level` lets INFO through; the caller checks first that it can be
    opened (a handler that fails here stops a worker with a traceback)."""
    handlers: dict[str, Any] = {
        "stderr": {
            "class": f"{__name__}.StderrHandler",
            "formatter": "openprofiles",
            # At WARNING or ERROR, the INFO records of the loggers that keep INFO (uvicorn's,
            # which uvicorn sets from its own log_level, and the audit lines') stay out too.
            "level": level,
        }
    }
    uvicorn_level = _uvicorn_level(level)
    loggers: dict[str, Any] = {
        **{name: {"level": level} for name in SERVING_LOGGERS},
        # Through the root's handler; "uvicorn.error" is uvicorn's general logger.
        "uvicorn": {"level": uvicorn_level, "handlers": [], "propagate": True},
        "uvicorn.error": {"level": uvicorn_level},
        "uvicorn.access": {"level": uvicorn_level},
    }
    if audit_log is not None:
        # An absolute path: the file the supervisor checked, whatever a worker's directory.
        handlers["audit"] = {
            "class": f"{__name__}.AuditFileHandler",
            "filename": os.path.abspath(audit_log),
        }
        # Its records still propagate to the root's stderr handler.
        loggers[AUDIT_LOGGER] = {"level": "INFO", "handlers": ["audit"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"openprofiles": {"format": LOG_FORMAT}},
        "handlers": handlers,
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": loggers,
    }


AUDIT_LOGGER = "openprofiles.audit"


class AuditFormatter(logging.Formatter):
    """An audit line as the audit log holds it: the UTC time in ISO 8601 (to the microsecond:
    several processes write, and the lines of one second keep their order), the id of the
    process that wrote it, and the audit text (`2026-11-30T15:32:18.123456Z pid=4242 api
    CreateDomain domain=acme ...`). No level or logger name: the file holds audit lines only."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{when} pid={record.process} {record.getMessage()}"


def _audit_records_only(record: logging.LogRecord) -> bool:
    return record.name == AUDIT_LOGGER or record.name.startswith(AUDIT_LOGGER + ".")


class AuditFileHandler(logging.handlers.WatchedFileHandler):
    """Appends the audit lines (and nothing else, wherever it is attached) to `filename`.

    The file is created owner-only (0600): the trail says which access keys and users changed
    which domains and profiles. Each line is one write(2) to a descriptor opened with O_APPEND,
    so the lines of the server's worker processes and of the commands run beside it land whole,
    one after another, never one inside another. Opened again when the file was moved or
    removed (logrotate without copytruncate: WatchedFileHandler). Opening it raises OSError
    (the caller says which file and which setting); a line that cannot be written later (a
    full disk) is printed on stderr with the reason, and the process goes on; the part of it
    a short write left is taken off again (`_take_back`), so every line in the file stays
    whole."""

    def __init__(self, filename: os.PathLike[str] | str) -> None:
        # Set before the parent's __init__, which may open the file.
        self._part_line_left = False
        super().__init__(filename, mode="ab")
        self.setFormatter(AuditFormatter())
        self.setLevel(logging.INFO)
        self.addFilter(_audit_records_only)

    def _open(self) -> Any:
        # Unbuffered bytes: every line reaches the file in the one write of `emit`. Not through
        # a symbolic link (whoever may write the folder could point it at any file this
        # process may write); a regular file this user owns is made owner-only (0600) even
        # when it existed before (logrotate's `create 0644`, a `touch`).
        flags = (
            os.O_WRONLY
            | os.O_APPEND
            | os.O_CREAT
            | getattr(os, "O_CLOEXEC", 0)
            | getattr(os, "O_NOFOLLOW", 0)
        )
        descriptor = os.open(self.baseFilename, flags, 0o600)
        try:
            status = os.fstat(descriptor)
            if (
                stat.S_ISREG(status.st_mode)
                and hasattr(os, "getuid")
                and status.st_uid == os.getuid()
            ):
                os.fchmod(descriptor, 0o600)
        except BaseException:
            os.close(descriptor)
            raise
        # Another file (logrotate moved the one with a part line left in it).
        self._part_line_left = False
        return os.fdopen(descriptor, "ab", buffering=0)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            self.reopenIfNeeded()
            if self.stream is None:
                # A reopen that failed earlier: tried again for each line.
                self.stream = self._open()
                self._statstream()
            if self._part_line_left:
                # A part of a line this process could not take back ends the file: this line
                # must not be glued onto it.
                line = b"\n" + line
            descriptor = self.stream.fileno()
            written = os.write(descriptor, line)
            if written != len(line):
                self._take_back(descriptor, written)
                raise OSError(0, f"only {written} of the line's {len(line)} bytes were written")
            self._part_line_left = False
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _take_back(self, descriptor: int, written: int) -> None:
        """A short write (the disk filled up, the file size limit) left the first `written`
        bytes of a line, no newline, at the end of the file: cut them off, so the file keeps
        whole lines only and the next line (this process's or another's, once there is room)
        starts a line of its own. Only while the file still ends where this write left it:
        a line another process appended since must not be cut (that process is as short of
        room, so the window is one system call wide). When the bytes cannot be taken back,
        this process's next line starts with a newline instead."""
        if written <= 0:
            return
        try:
            end = os.lseek(descriptor, 0, os.SEEK_CUR)  # O_APPEND: just after the part line
            if os.fstat(descriptor).st_size == end:
                os.ftruncate(descriptor, end - written)
                return
        except OSError:
            pass
        self._part_line_left = True

    def handleError(self, record: logging.LogRecord) -> None:
        """Say on stderr that the line could not be written, why, and the line itself (audit
        text, no personal value): a trail with a hole in it must not go unnoticed, and a server
        goes on serving (its stderr has the line too)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        else:
            reason = describe(exc) if exc is not None else "unknown"
        try:
            line = record.getMessage()
        except Exception:  # the line is what failed
            line = "(it could not be formatted)"
        sys.stderr.write(
            f"Warning: could not append an audit line to {self.baseFilename}: {reason}. "
            f"The line: {line}\n"
        )


@contextmanager
def audit_to(handler: AuditFileHandler) -> Iterator[None]:
    """Write the audit lines to `handler` too while the block runs, and close it after (a
    command's run). The audit logger is made to pass INFO records on for that time: a command's
    root logger stops at WARNING, where the lines were dropped before any handler saw them; its
    stderr handler still prints from WARNING only."""
    audit_logger = logging.getLogger(AUDIT_LOGGER)
    level = audit_logger.level
    raised = not audit_logger.isEnabledFor(logging.INFO)
    if raised:
        audit_logger.setLevel(logging.INFO)
    # A program that embeds the commands may have attached the same file already (the
    # server's logging in this process): a second handler would write each line twice.
    same = any(
        isinstance(h, AuditFileHandler) and h.baseFilename == handler.baseFilename
        for h in audit_logger.handlers
    )
    if not same:
        audit_logger.addHandler(handler)
    try:
        yield
    finally:
        audit_logger.removeHandler(handler)
        handler.close()
        if raised:
            audit_logger.setLevel(level)
