"""Typed settings: the only reader of the environment.

`Settings.from_env()` reads `OPENPROFILES_*` variables once (and sudo's SUDO_UID, for the audit
log: SYSTEM_VARIABLES); command-line options override them by building a new Settings with
`dataclasses.replace`. Nothing else in the package looks at
`os.environ` (`command_line_environment` is what a process passes its workers), but for two of
libpq's own variables that libpq itself reads (store.database says why).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_DATA_DIR = Path(".data")
# The audit log's file in the data dir (Settings.audit_log), and the value that turns it off.
AUDIT_LOG_NAME = "audit.log"
AUDIT_LOG_OFF = "off"
# The page cache the file loaders give their SQLite connection (`Settings.for_bulk_load`).
BULK_SQLITE_CACHE_MIB = 64
# How long a writer waits for another's lock (Settings.database_lock_timeout_seconds).
DEFAULT_DATABASE_LOCK_TIMEOUT_SECONDS = 30.0
# The longest: PostgreSQL's lock_timeout and SQLite's busy timeout are C ints of milliseconds.
LONGEST_DATABASE_LOCK_TIMEOUT_SECONDS = (2**31 - 1) // 1000
# The most server processes `serve --workers` (OPENPROFILES_WORKERS) starts. One per core is the
# advice, and more than the cores only adds memory (each process holds its own app, caches and
# database pool: up to 20 PostgreSQL connections, store.database) without serving more; 64
# covers the largest single machines, and past one machine more servers share the database
# (docs/operations.md). Unbounded, a slip (--workers 1000) forked processes until the machine
# ran out of memory or PostgreSQL out of connections.
MAX_WORKERS = 64


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    # None means the embedded SQLite database inside data_dir.
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Server processes sharing the listening socket (`openprofiles serve --workers`): Python
    # runs one request at a time per process, so a busy server on several cores wants several.
    workers: int = 1
    # SQLite's page cache per connection, in MiB; None keeps SQLite's own (2 MiB). A bulk
    # load's inserts land at random places of the key and object indexes, and with the pages
    # they touch kept in a larger cache a batch costs far less, so the file loaders use
    # BULK_SQLITE_CACHE_MIB unless this is set. The server keeps SQLite's default: with 64 MiB
    # its CreateProfile rate was lower (benchmarks/search.py, alternated; docs/performance.md).
    sqlite_cache_mib: int | None = None
    # When SQLite makes a commit durable (PRAGMA synchronous). "normal" (SQLite's advice for
    # WAL mode) syncs the write-ahead log at checkpoints: an answered write survives a crash of
    # the process, but the last ones may be lost when the machine loses power or its OS
    # crashes. "full" syncs the log at every commit, as PostgreSQL does, so nothing answered
    # is lost to that either; it costs the API's per-request writes about half their rate,
    # the sync being on the commit path (docs/performance.md, seventeenth session).
    sqlite_synchronous: str = "normal"
    # How long a write waits for another writer's lock before the request is answered 503 (a
    # command: an error naming the holder); 0 waits for ever. On PostgreSQL a statement's wait
    # for a lock another session holds (a LOCK TABLE, a long ALTER or VACUUM FULL: lock_timeout);
    # on SQLite the wait for the writer lock another process holds (a loader stopped with
    # Ctrl-Z) and SQLite's busy timeout (store.database).
    database_lock_timeout_seconds: float = DEFAULT_DATABASE_LOCK_TIMEOUT_SECONDS
    # Whether data_dir was given (OPENPROFILES_DATA_DIR, --data-dir) rather than left at its
    # default, .data in the current directory: messages about a missing installation say when
    # it is only the default (cli_support), the usual way to reach the wrong one.
    data_dir_given: bool = False
    # Region and account appear in ARNs (domains, local keys). A request's SigV4 credential
    # scope may name any region (wire.sigv4._credential says why).
    region: str = "us-east-1"
    account_id: str = "000000000000"
    # Phone numbers without a country code are read as numbers of this region (ISO 3166 code).
    default_phone_region: str = "US"
    # How far a request's signing time may be from the server's clock.
    max_clock_skew_seconds: int = 15 * 60
    # The addresses of reverse proxies whose X-Forwarded-For header names the client (uvicorn's
    # --forwarded-allow-ips: IP addresses and networks, comma-separated, or "*" alone; checked
    # by `forwarded_allow_ips_problem`); None trusts no such header. Sign-in's
    # throttle counts failures per client address, and a header anyone may send would let a
    # guesser name a new address for every guess.
    forwarded_allow_ips: str | None = None
    # The names a request's Host header may give besides the loopback ones (localhost,
    # 127.0.0.1, [::1]), with any port (OPENPROFILES_ALLOWED_HOSTS: host names or IP addresses,
    # comma-separated, or "*" alone for any Host; checked by `allowed_hosts_problem`). None:
    # a server bound to loopback answers the loopback names only, so that a web page whose name
    # its DNS re-binds to 127.0.0.1 cannot call it from a browser on this machine (DNS
    # rebinding); one bound to the network answers any Host (wire.allowed_hosts). A reverse
    # proxy on the same host that forwards `Host: profiles.example.com` to 127.0.0.1 must list
    # that name.
    allowed_hosts: tuple[str, ...] | None = None
    kms_endpoint_url: str | None = None
    # How long an unwrapped domain data key is used before its key provider (KMS) is asked
    # again: disabling or revoking a key takes effect within this time.
    data_key_cache_seconds: float = 300.0
    sqs_endpoint_url: str | None = None
    kinesis_endpoint_url: str | None = None
    s3_endpoint_url: str | None = None
    # Credentials and region for the AWS adapters (KMS, SQS, ...); None uses boto3's chain.
    aws_region: str | None = None
    # How often the server looks for probabilistic matching jobs whose JobSchedule slot has come
    # (identity.schedule); 0 turns the scheduler off in this process.
    matching_schedule_check_seconds: float = 60.0
    # How often the server sends dead letters whose SQS send failed or never happened to their
    # domain's queue again (dlq.resend); 0 turns it off in this process.
    dlq_resend_interval_seconds: float = 300.0
    # A running matching job writes a heartbeat at each step and, while Splink runs, every fifth
    # of this; a job whose heartbeat is older is taken for dead (its process stopped) by the
    # scheduler's check, which marks it FAILED and lets its JobSchedule slot run again.
    matching_job_lease_seconds: float = 600.0
    # How many matching jobs of a domain may start in any 7 days (scheduled or on demand): the
    # cloud service's 3 (spec §0, §5.2); 0 means no limit, e.g. for a benchmark's repeated runs.
    matching_jobs_per_week: int = 3
    # Processes that compute a domain's rule-match digests in a full rule pass (identity.rule_pass)
    # besides the one writing them; None: one per core. 0 computes them in the writing process.
    rule_pass_processes: int | None = None
    # The folders flows with a local-folder source may read, and anything under them (symlinks
    # followed); None means DATA_DIR/flows only. Without a bound, an API caller could make the
    # server read any directory it can access.
    flow_folder_roots: tuple[Path, ...] | None = None
    # Scheduled and Event runs leave a file of a folder changed within this many seconds for a
    # later run: it may still be being written (flows.sources). OnDemand runs read it anyway.
    flow_folder_settle_seconds: float = 5.0
    # How long one read of the database's state (dead letters, kept contact records) serves the
    # scrapes of GET /metrics in a process (metrics.state): its counts read whole tables.
    metrics_state_seconds: float = 15.0
    # Whether GET /metrics is served (OPENPROFILES_METRICS: on or off). Off, it answers 404 and
    # nothing reads the database's state for it: for a server exposed where /metrics cannot be
    # kept to the monitoring network, or that no one scrapes.
    metrics: bool = True
    # The bearer token a scrape of GET /metrics must carry (`Authorization: Bearer TOKEN`), None
    # for none: its labels name domains, and a server listening beyond this machine answered
    # them to anyone. A secret: left out of the repr, so no log of the settings shows it, and
    # never quoted by the errors below.
    metrics_token: str | None = dataclass_field(default=None, repr=False)
    # Web origins (scheme://host[:port]) whose pages may call the API from a browser with an
    # AWS SDK, as a custom agent desktop does (CORS). None by default: a browser then lets no
    # other site's page read an answer. "*" allows every origin.
    cors_origins: tuple[str, ...] = ()
    # The file the audit lines (openprofiles.audit) are appended to, by the server and by every
    # command: None means AUDIT_LOG_NAME in data_dir, AUDIT_LOG_OFF writes none, and a relative
    # path is taken in data_dir (`audit_log_file`). A server also prints them on stderr; a
    # command does not (its stderr is for warnings), so without the file a command's lines
    # reached no one.
    audit_log: str | None = None
    # The uid of the user who ran the command through sudo (SUDO_UID), as given: the audit line
    # writes it beside the acting uid (0, or the one `sudo -u` named) only when it has a uid's
    # form (audit.cli_command), since anyone may set the variable to any text.
    sudo_uid: str | None = None
    # Whether the API's reads of customers' personal data (SearchProfiles, BatchGetProfile, ...:
    # audit.PERSONAL_READS) are audit-logged too (OPENPROFILES_AUDIT_API_READS: on or off). Off
    # by default: applications read thousands of times a second, and a line for each fills the
    # log; on, the log answers which key read a customer's data. The web pages' reads of a
    # customer's data are logged whatever this says (ui.web.UI.page).
    audit_api_reads: bool = False
    # How much a server logs on stderr (one of LOG_LEVELS): OpenProfiles' records from this
    # level, uvicorn's from it but never below INFO, other libraries' from WARNING
    # (logging_setup.serving_log_config). A one-off command prints warnings only, whatever this.
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        # The socket layer takes a port modulo 65536: 99999 would listen on 34463.
        if not 1 <= self.port <= 65535:
            raise ValueError(f"OPENPROFILES_PORT must be between 1 and 65535, not {self.port}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(
                f"OPENPROFILES_WORKERS must be a whole number from 1 to {MAX_WORKERS} (one per "
                f"core for a busy server), not {self.workers}"
            )
        if self.database_url is not None:
            # Never the URL itself: it may hold the database's password.
            problem = database_url_problem(self.database_url)
            if problem is not None:
                raise ValueError(f"OPENPROFILES_DATABASE_URL {problem}")
        for endpoint in _ENDPOINT_URLS:
            url = getattr(self, endpoint)
            # Checked here, not when a client is first built with it: botocore's "Invalid
            # endpoint" came as a traceback, after the command had started its work.
            if url is not None and not is_http_url(url):
                raise ValueError(f"OPENPROFILES_{endpoint.upper()} {HTTP_URL_FORM}, not {url!r}")
        if self.sqlite_cache_mib is not None and self.sqlite_cache_mib < 1:
            # SQLite would read a zero or negative size as a number of pages, not as "none".
            raise ValueError(
                "OPENPROFILES_SQLITE_CACHE_MIB must be at least 1 (MiB), "
                f"not {self.sqlite_cache_mib}"
            )
        # NaN fails both comparisons, so it is refused too.
        if not 0 <= self.database_lock_timeout_seconds <= LONGEST_DATABASE_LOCK_TIMEOUT_SECONDS:
            raise ValueError(
                "OPENPROFILES_DATABASE_LOCK_TIMEOUT_SECONDS must be 0 (no timeout) or more, up to "
                f"{LONGEST_DATABASE_LOCK_TIMEOUT_SECONDS} "
                f"({shown_duration(LONGEST_DATABASE_LOCK_TIMEOUT_SECONDS)}), "
                f"not {self.database_lock_timeout_seconds:g}"
            )
        if self.sqlite_synchronous not in SQLITE_SYNCHRONOUS_MODES:
            raise ValueError(
                "OPENPROFILES_SQLITE_SYNCHRONOUS must be one of "
                f"{', '.join(SQLITE_SYNCHRONOUS_MODES)}, not {self.sqlite_synchronous!r}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ValueError(
                f"OPENPROFILES_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                f"not {self.log_level!r}"
            )
        if self.metrics_token is not None and not _METRICS_TOKEN.fullmatch(self.metrics_token):
            # Never the value: it is a secret, unlike the other settings.
            raise ValueError(
                f"OPENPROFILES_METRICS_TOKEN must be at least {METRICS_TOKEN_LEAST} characters, "
                "each a visible ASCII one (no space, no line end): it is written in an HTTP "
                "header, and /metrics has no throttle to slow down guesses of a short one"
            )
        if self.forwarded_allow_ips is not None:
            problem = forwarded_allow_ips_problem(self.forwarded_allow_ips)
            if problem is not None:
                raise ValueError(f"OPENPROFILES_FORWARDED_ALLOW_IPS {problem}")
        if self.allowed_hosts is not None:
            problem = allowed_hosts_problem(self.allowed_hosts)
            if problem is not None:
                raise ValueError(f"OPENPROFILES_ALLOWED_HOSTS {problem}")
        for origin in self.cors_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    "OPENPROFILES_CORS_ORIGINS must list origins such as "
                    f"https://desk.example.com or http://localhost:3000 (or *), not {origin!r}"
                )
        for field, (low, high) in _NUMBER_RANGES.items():
            value = getattr(self, field)
            # NaN fails every comparison, so `not low <= value <= high` refuses it too.
            if value is not None and not low <= value <= high:
                raise ValueError(
                    f"OPENPROFILES_{field.upper()} must be {_describe_range(field, low, high)}, "
                    f"not {value if isinstance(value, int) else format(value, 'g')}"
                )
        # libphonenumber cannot read a number without a country code under a region it does not
        # know: every such phone would be kept as written (never matching its +E.164 form) or
        # refused later, with a reason that does not point here.
        if not _is_phone_region(self.default_phone_region):
            raise ValueError(
                "OPENPROFILES_DEFAULT_PHONE_REGION must be a two-letter region code that "
                f"libphonenumber knows, such as US or GB, not {self.default_phone_region!r}"
            )

    def for_bulk_load(self) -> Settings:
        """These settings for a process that loads records in large batches (the file
        loaders): the larger SQLite page cache, unless OPENPROFILES_SQLITE_CACHE_MIB says."""
        if self.sqlite_cache_mib is not None:
            return self
        return replace(self, sqlite_cache_mib=BULK_SQLITE_CACHE_MIB)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "openprofiles.sqlite3"

    @property
    def keyring_path(self) -> Path:
        return self.data_dir / "keyring.json"

    @property
    def audit_log_file(self) -> Path | None:
        """The audit log's file (`audit_log`), or None when it is off. A relative path is taken
        in the data dir, as the default is, not in the current directory: a server started in
        one directory and a command run in another must append to the one file."""
        if self.audit_log == AUDIT_LOG_OFF:
            return None
        # An absolute path joined to the data dir is that path.
        return self.data_dir / (self.audit_log or AUDIT_LOG_NAME)

    @property
    def effective_flow_folder_roots(self) -> tuple[Path, ...]:
        if self.flow_folder_roots is None:
            return (self.data_dir / "flows",)
        return self.flow_folder_roots

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database's file (the data dir's, or the one --database-url names); None on
        PostgreSQL or for an in-memory SQLite database."""
        if not self.is_sqlite:
            return None
        from sqlalchemy import make_url

        path = make_url(self.effective_database_url).database
        return Path(path) if path and path != ":memory:" else None

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the given fields replaced; None values are ignored (option not given)."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "data_dir" in given:
            given["data_dir"] = Path(str(given["data_dir"]))
            given["data_dir_given"] = True
        return replace(self, **given)  # type: ignore[arg-type]

    def command_line_environment(self) -> dict[str, str]:
        """The variables `from_env` reads for the settings a command line can override, set to
        this object's values: how a process hands them to worker processes it starts."""
        env = {
            "OPENPROFILES_DATA_DIR": str(self.data_dir),
            "OPENPROFILES_HOST": self.host,
            "OPENPROFILES_PORT": str(self.port),
            "OPENPROFILES_WORKERS": str(self.workers),
        }
        if self.database_url:
            env["OPENPROFILES_DATABASE_URL"] = self.database_url
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name)
            return value if value else None

        def whole(name: str) -> int | None:
            return _number(name, get(name), int)

        def seconds(name: str) -> float | None:
            return _number(name, get(name), float)

        base = cls()
        return base.with_overrides(
            data_dir=get("DATA_DIR"),
            # As set, even empty, unlike every other variable (where empty means unset): an
            # empty URL is refused (database_url_problem), as an empty --database-url is. It is
            # almost always a shell variable that was not set (DATABASE_URL=$PG_URL), and read
            # as unset it would put the server on a new, empty SQLite database in the data dir
            # beside the PostgreSQL one it was meant to use. Unset the variable for SQLite.
            database_url=env.get(PREFIX + "DATABASE_URL"),
            host=get("HOST"),
            port=whole("PORT"),
            workers=whole("WORKERS"),
            sqlite_cache_mib=whole("SQLITE_CACHE_MIB"),
            # PRAGMA values are case-insensitive; "FULL" means full.
            sqlite_synchronous=(get("SQLITE_SYNCHRONOUS") or "").lower() or None,
            database_lock_timeout_seconds=seconds("DATABASE_LOCK_TIMEOUT_SECONDS"),
            region=get("REGION"),
            account_id=get("ACCOUNT_ID"),
            # ISO 3166 codes are upper case; "gb" means GB, as it would to any reader.
            default_phone_region=(get("DEFAULT_PHONE_REGION") or "").upper() or None,
            # " * " means "*" (trust every proxy), as it would to any reader; uvicorn would
            # take it for a name that no client's address is.
            forwarded_allow_ips=(get("FORWARDED_ALLOW_IPS") or "").strip() or None,
            # Host names are case-insensitive, as a Host header's are; spaces around an entry
            # are no part of it.
            allowed_hosts=(
                tuple(entry.strip().lower() for entry in hosts.split(","))
                if (hosts := (get("ALLOWED_HOSTS") or "").strip())
                else None
            ),
            kms_endpoint_url=get("KMS_ENDPOINT_URL"),
            data_key_cache_seconds=seconds("DATA_KEY_CACHE_SECONDS"),
            sqs_endpoint_url=get("SQS_ENDPOINT_URL"),
            kinesis_endpoint_url=get("KINESIS_ENDPOINT_URL"),
            s3_endpoint_url=get("S3_ENDPOINT_URL"),
            aws_region=get("AWS_REGION"),
            matching_schedule_check_seconds=seconds("MATCHING_SCHEDULE_CHECK_SECONDS"),
            dlq_resend_interval_seconds=seconds("DLQ_RESEND_INTERVAL_SECONDS"),
            matching_job_lease_seconds=seconds("MATCHING_JOB_LEASE_SECONDS"),
            matching_jobs_per_week=whole("MATCHING_JOBS_PER_WEEK"),
            rule_pass_processes=whole("RULE_PASS_PROCESSES"),
            flow_folder_settle_seconds=seconds("FLOW_FOLDER_SETTLE_SECONDS"),
            metrics_state_seconds=seconds("METRICS_STATE_SECONDS"),
            metrics=_switch("METRICS", get("METRICS")),
            metrics_token=get("METRICS_TOKEN"),
            cors_origins=(
                tuple(o.strip() for o in origins.split(",") if o.strip())
                if (origins := get("CORS_ORIGINS"))
                else None
            ),
            # "OFF" means off, as it would to any reader; a path is taken as written.
            audit_log=(
                AUDIT_LOG_OFF
                if (audit_log := get("AUDIT_LOG")) and audit_log.lower() == AUDIT_LOG_OFF
                else audit_log
            ),
            audit_api_reads=_switch("AUDIT_API_READS", get("AUDIT_API_READS")),
            # Level names are case-insensitive; "debug" means DEBUG, as it does to logging.
            log_level=(get("LOG_LEVEL") or "").upper() or None,
            # Set by sudo, not by the operator: no OPENPROFILES_ prefix.
            sudo_uid=env.get("SUDO_UID") or None,
            # Several folders are separated as in PATH (":" on POSIX).
            flow_folder_roots=(
                tuple(Path(r) for r in roots.split(os.pathsep) if r)
                if (roots := get("FLOW_FOLDER_ROOTS"))
                else None
            ),
        )


PREFIX = "OPENPROFILES_"
# The OPENPROFILES_* variables `Settings.from_env` reads (without the prefix). A name that is
# not here, such as a misspelling, would be ignored silently: `unknown_variables` names them.
VARIABLES = (
    "DATA_DIR",
    "DATABASE_URL",
    "HOST",
    "PORT",
    "WORKERS",
    "SQLITE_CACHE_MIB",
    "SQLITE_SYNCHRONOUS",
    "DATABASE_LOCK_TIMEOUT_SECONDS",
    "REGION",
    "ACCOUNT_ID",
    "DEFAULT_PHONE_REGION",
    "FORWARDED_ALLOW_IPS",
    "ALLOWED_HOSTS",
    "KMS_ENDPOINT_URL",
    "DATA_KEY_CACHE_SECONDS",
    "SQS_ENDPOINT_URL",
    "KINESIS_ENDPOINT_URL",
    "S3_ENDPOINT_URL",
    "AWS_REGION",
    "MATCHING_SCHEDULE_CHECK_SECONDS",
    "DLQ_RESEND_INTERVAL_SECONDS",
    "MATCHING_JOB_LEASE_SECONDS",
    "MATCHING_JOBS_PER_WEEK",
    "RULE_PASS_PROCESSES",
    "CORS_ORIGINS",
    "FLOW_FOLDER_ROOTS",
    "FLOW_FOLDER_SETTLE_SECONDS",
    "METRICS_STATE_SECONDS",
    "METRICS",
    "METRICS_TOKEN",
    "AUDIT_LOG",
    "AUDIT_API_READS",
    "LOG_LEVEL",
)
# The variables `Settings.from_env` reads that are not OpenProfiles' own: sudo's, whose
# SUDO_UID names the user who ran a command as root (Settings.sudo_uid, for the audit log).
SYSTEM_VARIABLES = ("SUDO_UID",)
# OPENPROFILES_* variables that the project's other tools read, not the server: the test suite's
# database, the JavaScript SDK scenario's keys and endpoint (tests/sdk/js) and the benchmarks'.
OTHER_TOOLS_VARIABLES = frozenset(
    {
        "TEST_DATABASE_URL",
        "ACCESS_KEY_ID",
        "SECRET_ACCESS_KEY",
        "AGENT_ACCESS_KEY_ID",
        "AGENT_SECRET_ACCESS_KEY",
        "MATCHES_DOMAIN",
        "ENDPOINT",
        "WRK_REQUESTS",
    }
)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """The environment's OPENPROFILES_* variables that no setting reads (in any case: the
    variables are read in upper case), each with the known name closest to it, if any is close:
    a misspelled OPENPROFILES_DATABSE_URL would otherwise leave the server on a new, empty
    SQLite database without a word."""
    env = os.environ if environ is None else environ
    found = []
    for name in sorted(env):
        if not name.upper().startswith(PREFIX):
            continue
        suffix = name[len(PREFIX) :]
        if name.startswith(PREFIX) and (suffix in VARIABLES or suffix in OTHER_TOOLS_VARIABLES):
            continue
        close = difflib.get_close_matches(suffix.upper(), VARIABLES, n=1)
        found.append((name, PREFIX + close[0] if close else None))
    return found


SECONDS_PER_YEAR = 365 * 24 * 3600
# The values OPENPROFILES_SQLITE_SYNCHRONOUS takes (Settings.sqlite_synchronous); never "off",
# which would let a power loss corrupt the database, not just lose its last commits.
SQLITE_SYNCHRONOUS_MODES = ("full", "normal")
# The values OPENPROFILES_LOG_LEVEL takes (Settings.log_level), logging's level names.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# The allowed values of the numeric settings, bounds included (None, where allowed, means the
# default). A year bounds the times: a larger one is a mistake, and would overflow the
# timedelta or the thread wait it becomes.
_NUMBER_RANGES: dict[str, tuple[int, int]] = {
    # 0: every read of a domain's data asks its key provider again.
    "data_key_cache_seconds": (0, SECONDS_PER_YEAR),
    # 0 turns the task off.
    "matching_schedule_check_seconds": (0, SECONDS_PER_YEAR),
    "dlq_resend_interval_seconds": (0, SECONDS_PER_YEAR),
    # A shorter lease would take running jobs for dead between two heartbeats.
    "matching_job_lease_seconds": (1, SECONDS_PER_YEAR),
    # 0: no limit.
    "matching_jobs_per_week": (0, 1_000_000),
    # 0: digests computed in the writing process.
    "rule_pass_processes": (0, 1024),
    # 0: automatic runs read a file however recently it changed.
    "flow_folder_settle_seconds": (0, 3600),
    # 0: every scrape reads the state.
    "metrics_state_seconds": (0, 3600),
}


def _describe_range(field: str, low: int, high: int) -> str:
    if not field.endswith("_seconds"):
        return f"a whole number from {low} to {high}"
    # Under a minute, the number of seconds says it all.
    longest = f" ({shown_duration(high)})" if high >= 60 else ""
    return f"a number of seconds from {low} to {high}{longest}"


# The units `shown_duration` names, largest first.
_DURATION_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def shown_duration(seconds: int) -> str:
    """A number of seconds as a reader takes it in: in the largest unit it is a whole number of
    (fewer than a thousand of them), "1 hour", "90 minutes", "365 days", "45 seconds"; else
    about so many of the largest unit it is at least one of, "about 25 days" (2147483)."""
    for name, size in _DURATION_UNITS:
        count, rest = divmod(seconds, size)
        if not rest and count < 1000 and (count or size == 1):
            return _units(count, name)
    name, size = next((n, s) for n, s in _DURATION_UNITS if seconds >= s)
    return "about " + _units(round(seconds / size), name)


def _units(count: int, name: str) -> str:
    return f"{count} {name}{'' if count == 1 else 's'}"


# The database systems (and their drivers: SQLAlchemy's dialect+driver) OpenProfiles runs on.
# `postgres://` is libpq's and Heroku's spelling of `postgresql://`, read as it
# (store.database._psycopg_url); psycopg 3 is the PostgreSQL driver installed with OpenProfiles.
_DATABASE_SCHEMES = frozenset(
    {"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg", "postgres"}
)
_DATABASE_URL_FORM = (
    "give postgresql://USER@HOST/DATABASE for PostgreSQL or sqlite:///PATH for a SQLite file; "
    "for the SQLite database in the data dir, give none (no --database-url, "
    "OPENPROFILES_DATABASE_URL unset)"
)


def database_url_problem(url: str) -> str | None:
    """What is wrong with a database URL (OPENPROFILES_DATABASE_URL, --database-url), as the
    rest of a sentence after its name; None when SQLAlchemy reads it as a URL of a database
    system OpenProfiles runs on (_DATABASE_SCHEMES). Never quotes the URL, which may hold a
    password.

    Checked before anything else is done: `keys list`, which needs no database, ignored a URL
    that was not one, and the other commands refused it only when they opened the database
    (exit status 1, not a usage error). An empty URL is refused too: it is almost always an
    unset shell variable, and the SQLite database in the data dir it used to mean is not the
    one that was meant."""
    if not url:
        return f"is empty (an unset shell variable?): {_DATABASE_URL_FORM}"
    # Imported here: most commands' settings name no URL, and SQLAlchemy is not a free import.
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"is not a database URL: {_DATABASE_URL_FORM}"
    except ValueError:
        return f"has a port that is not a number: {_DATABASE_URL_FORM}"
    scheme = parsed.drivername
    if scheme not in _DATABASE_SCHEMES:
        # The scheme holds no secret (SQLAlchemy takes word characters and '+' only there).
        return f"names {scheme!r}, a database or driver OpenProfiles does not run on: " + (
            _DATABASE_URL_FORM
        )
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return f"has a port that is not one (1 to 65535): {_DATABASE_URL_FORM}"
    return None


# The settings that name an endpoint of an AWS-compatible service, each checked by is_http_url.
_ENDPOINT_URLS = ("kms_endpoint_url", "sqs_endpoint_url", "kinesis_endpoint_url", "s3_endpoint_url")
# What an endpoint URL must be, as the rest of a sentence after its setting's name.
HTTP_URL_FORM = (
    "must be an http:// or https:// URL with a host, e.g. https://HOST or http://localhost:4566 "
    "(an emulator)"
)


def is_http_url(value: str) -> bool:
    """Whether `value` is an http(s) URL with a host (an endpoint for botocore to call), with a
    port, if any, that is one, and no whitespace: the test of the endpoint settings
    (OPENPROFILES_*_ENDPOINT_URL) and of the commands' --endpoint-url (cli_support.http_url)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - read for its ValueError on a port that is not one
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a port that is not a number or out of range, a bad IPv6 literal
        valid = False
    return valid and not any(char.isspace() for char in value)


def forwarded_allow_ips_problem(value: str) -> str | None:
    """What is wrong with an OPENPROFILES_FORWARDED_ALLOW_IPS value, as the rest of a sentence
    after the variable's name; None when uvicorn reads every part of it as the operator meant.

    uvicorn (middleware.proxy_headers._TrustedHosts) reads the value as "*" (the whole value:
    trust every client), else as comma-separated entries, each an IP address, a network with a
    "/" (10.0.0.0/24), or else a literal matched against the client's host as text, meant for
    a unix socket's path. A literal never matches here: `serve` listens on TCP only, where a
    client's host is always its IP address, and uvicorn 0.54 gives a unix socket's client no
    host at all. So "garbage", a host name, "[::1]", "*" among other entries, or a network
    with host bits ("10.0.0.5/24", which ipaddress refuses) were taken silently for names that
    match no proxy: every proxied client then counted as the proxy in the sign-in throttle."""
    if value == "*":
        return None
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            return f"has an empty entry in {value!r}; {_FORWARDED_ALLOW_IPS_FORM}"
        if entry == "*":
            return (
                f"may be * (trust every address) only alone, not among other entries in "
                f"{value!r}; {_FORWARDED_ALLOW_IPS_FORM}"
            )
        try:
            if "/" in entry:
                ipaddress.ip_network(entry)
            else:
                ipaddress.ip_address(entry)
        except ValueError:
            return f"{_FORWARDED_ALLOW_IPS_FORM}, not {entry!r}{_meant_network(entry)}"
    return None


_FORWARDED_ALLOW_IPS_FORM = (
    "must list the reverse proxies' IP addresses or networks, comma-separated (10.0.0.5, "
    "10.0.0.0/24, fd00::/8), or be * to trust every address"
)


def _meant_network(entry: str) -> str:
    """A hint for a network written with its host bits set, which uvicorn would not read as a
    network: " (as a network: 10.0.0.0/24)" for 10.0.0.5/24; else nothing."""
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return ""
    return f" (as a network: {network})"


def allowed_hosts_problem(hosts: tuple[str, ...]) -> str | None:
    """What is wrong with OPENPROFILES_ALLOWED_HOSTS's entries (`hosts`), as the rest of a
    sentence after the variable's name; None when each is a host name or an IP address (an IPv6
    one with or without brackets), or the whole is "*". A port, a scheme or a path is refused
    rather than left to match no Host: the name is compared whatever the port, and a value that
    matches nothing would refuse every request the proxy forwards, without a word at start."""
    if hosts == ("*",):
        return None
    for entry in hosts:
        if not entry:
            return f"has an empty entry in {','.join(hosts)!r}; {_ALLOWED_HOSTS_FORM}"
        if entry == "*":
            return (
                f"may be * (any Host) only alone, not among other entries in "
                f"{','.join(hosts)!r}; {_ALLOWED_HOSTS_FORM}"
            )
        if not _is_host(entry):
            return f"{_ALLOWED_HOSTS_FORM}, not {entry!r}{_without_port(entry)}"
    return None


_ALLOWED_HOSTS_FORM = (
    "must list host names or IP addresses, comma-separated, without a scheme or a port "
    "(profiles.example.com, 10.0.0.5, [fd00::5]; any port is answered), or be * to answer "
    "any Host"
)
# A DNS name's labels (underscores too: container and service names have them); an optional
# final dot.
_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?", re.IGNORECASE | re.ASCII)


def _is_host(entry: str) -> bool:
    """Whether `entry` is a host name of at most 253 characters, an IPv4 address (a name of
    digits only must be one: 10.0.0.256 is no host), or an IPv6 address, in brackets or not."""
    if not entry.isascii():
        # A Host header is ASCII: an internationalised name is listed in its xn-- form.
        return False
    if ":" in entry or entry.startswith("["):
        inside = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            return False
        return True
    if len(entry) > 253 or not _HOST_NAME.fullmatch(entry):
        return False
    if all(label.isdigit() for label in entry.removesuffix(".").split(".")):
        try:
            ipaddress.IPv4Address(entry.removesuffix("."))
        except ValueError:
            return False
    return True


def _without_port(entry: str) -> str:
    """A hint for a host written with its port: " (without the port: profiles.example.com)"
    for profiles.example.com:443; else nothing."""
    host, _, port = entry.rpartition(":")
    if port.isdigit() and host and _is_host(host) and not (":" in host and "[" not in host):
        return f" (without the port: {host})"
    return ""


# OPENPROFILES_METRICS_TOKEN (Settings.metrics_token): visible ASCII (a header's value, as
# RFC 6750's bearer tokens are), long enough that guessing it is hopeless (`openssl rand -hex 32`
# gives 64).
METRICS_TOKEN_LEAST = 16
_METRICS_TOKEN = re.compile(rf"[\x21-\x7e]{{{METRICS_TOKEN_LEAST},}}")

# What a browser sends as Origin: a scheme, a host and maybe a port, nothing after them.
_ORIGIN = re.compile(r"https?://[^/\s:?#]+(:[0-9]{1,5})?")


def _number(name: str, text: str | None, kind: type[int] | type[float]) -> Any:
    """The variable's value as a number, or None when unset; a ValueError that names the
    variable (settings are not personal data, so the value is quoted) when it is not one."""
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"OPENPROFILES_{name} must be {what}, not {text!r}") from None


def _switch(name: str, text: str | None) -> bool | None:
    """An on/off variable's value (in any case), or None when unset; a ValueError that names the
    variable when it is neither."""
    if text is None:
        return None
    if text.lower() in ("on", "off"):
        return text.lower() == "on"
    raise ValueError(f"OPENPROFILES_{name} must be on or off, not {text!r}")


def _is_phone_region(code: str) -> bool:
    # Imported here: most commands never read a phone number, and the import is not free.
    import phonenumbers

    return code in phonenumbers.SUPPORTED_REGIONS
