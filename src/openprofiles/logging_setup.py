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
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
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


# The loggers a server prints from INFO (uvicorn sets its own); every other one prints from
# WARNING, the root's level.
SERVING_LEVELS = {"openprofiles": "INFO"}


def log_to_stderr(*, serving: bool = False) -> None:
    """Print records on stderr with their time, level and logger name (without a handler,
    Python printed a WARNING's message alone and dropped every INFO). From WARNING, or, for a
    server (`serving`), OpenProfiles' records from INFO: a one-off command says what it did on
    stdout, where scripts read it. Idempotent; other handlers (a test runner's) are left
    alone."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    # The handler's own level, not only the loggers': whoever lowers the root's level (a test
    # runner capturing DEBUG) must not turn a command's stderr into other libraries' INFO. Set
    # either way: a command run after a server in one process must not go on printing INFO.
    handler.setLevel(logging.INFO if serving else logging.WARNING)
    for existing in list(handler.filters):
        handler.removeFilter(existing)
    if serving:
        handler.addFilter(_from_info_only_for_vetted_loggers)
    for name, level in SERVING_LEVELS.items():
        logging.getLogger(name).setLevel(level if serving else logging.NOTSET)


def _from_info_only_for_vetted_loggers(record: logging.LogRecord) -> bool:
    """A server's INFO records are printed from OpenProfiles' and uvicorn's loggers only."""
    if record.levelno >= logging.WARNING:
        return True
    return record.name.split(".")[0] in {*SERVING_LEVELS, "uvicorn"}


def serving_log_config() -> dict[str, Any]:
    """`log_to_stderr(serving=True)` as uvicorn's `log_config`, which uvicorn applies in the
    supervising process and in each worker it starts: one stderr handler, one format, for
    OpenProfiles' records, uvicorn's (from INFO: start, stop, failed requests) and other
    libraries' (from WARNING: their INFO messages are text nobody has checked for data)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"openprofiles": {"format": LOG_FORMAT}},
        "handlers": {"stderr": {"class": f"{__name__}.StderrHandler", "formatter": "openprofiles"}},
        "root": {"handlers": ["stderr"], "level": "WARNING"},
        "loggers": {
            **{name: {"level": level} for name, level in SERVING_LEVELS.items()},
            # Through the root's handler; "uvicorn.error" is uvicorn's general logger.
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"level": "INFO"},
        },
    }
