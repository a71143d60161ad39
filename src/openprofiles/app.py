"""Application assembly: `build_services(settings)` and `create_app(settings)`.

Nothing runs at import time; this module wires the store, the keyring and key manager, the
NextToken codec and the handler registry into one Starlette application serving the AWS API
(at the root, like the real endpoint) and a health check.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any

from sqlalchemy import inspect, literal, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from openprofiles import logging_setup
from openprofiles.auth.authenticator import Authenticator
from openprofiles.auth.credentials import secret_opens
from openprofiles.auth.policy import answer_shown_to, authorize, errors_shown_to
from openprofiles.background import PeriodicTask, background_lifespan
from openprofiles.contacts.http import contact_routes
from openprofiles.contacts.sweep import kept_records_task
from openprofiles.context import Principal, RequestContext, Services
from openprofiles.crypto.arns import is_aws_kms_arn
from openprofiles.crypto.domain_keys import KeyManager
from openprofiles.crypto.errors import KeyringError
from openprofiles.crypto.keyring import DEFAULT_ALIAS, Keyring
from openprofiles.crypto.providers import ProviderResolver, local_wrap_header, other_material
from openprofiles.dlq.resend import resend_task
from openprofiles.domains import handlers as domain_handlers
from openprofiles.domains.unreadable import (
    LOST_KEY_DROP_COMMAND,
    keyring_behind,
    keyring_problem,
    record_aliased_keys,
)
from openprofiles.identity import handlers as identity_handlers
from openprofiles.identity.rule_activation import run_pending_passes
from openprofiles.identity.schedule import run_due_now
from openprofiles.integrations import handlers as integration_handlers
from openprofiles.metrics.endpoint import metrics_endpoint
from openprofiles.object_types import handlers as object_type_handlers
from openprofiles.objects import handlers as object_handlers
from openprofiles.objects.expiry import expiry_task
from openprofiles.profiles import handlers as profile_handlers
from openprofiles.settings import Settings
from openprofiles.store.conflicts import retrying
from openprofiles.store.database import Database
from openprofiles.store.migrate import before_migrating, upgrade_to_head
from openprofiles.store.schema import credential, domain, web_user
from openprofiles.tags import handlers as tag_handlers
from openprofiles.ui import ui_routes
from openprofiles.ui.web import hsts
from openprofiles.wire.dispatch import ApiDispatcher, make_asgi_app, raw_path_of
from openprofiles.wire.model import load_service_model
from openprofiles.wire.nosniff import nosniff
from openprofiles.wire.pagination import TokenCodec
from openprofiles.wire.registry import build_registry
from openprofiles.wire.routing import Router

# One module per feature package; each defines handlers named after AWS operations.
HANDLER_MODULES: tuple[ModuleType, ...] = (
    domain_handlers,
    object_type_handlers,
    object_handlers,
    profile_handlers,
    tag_handlers,
    integration_handlers,
    identity_handlers,
)


# The hot data-plane operations, run on the event loop on SQLite (openprofiles.blocking): each
# is a few reads and at most one short write transaction. On PostgreSQL a query can wait on
# another process's row lock, which the loop cannot see coming, so every request there runs in
# a worker thread.
ON_THE_LOOP_OPERATIONS = frozenset(
    {
        "CreateProfile",
        "UpdateProfile",
        "DeleteProfile",
        "SearchProfiles",
        "BatchGetProfile",
        "AddProfileKey",
        "DeleteProfileKey",
        "PutProfileObject",
        "ListProfileObjects",
        "DeleteProfileObject",
    }
)


def build_services(settings: Settings, *, migrate: bool = True) -> Services:
    """Open the database (bringing its schema up to date) and the key manager."""
    database = Database.from_settings(settings)
    try:
        # Before migrating: a migration may unwrap the domains' keys (store.migrate). These
        # checks read in `before_migrating` transactions: another process's upgrade under way
        # and they wait for each other in turn, where they used to deadlock.
        _check_keyring_belongs(settings, database)
    except KeyringError:
        database.dispose()
        raise
    keyring = Keyring(settings.keyring_path)
    keys = KeyManager(
        ProviderResolver(settings, keyring), cache_seconds=settings.data_key_cache_seconds
    )
    try:
        _check_keyring_opens(settings, database, keyring, keys)
    except Exception:  # a keyring that is not the data's, or a disabled default key
        database.dispose()
        raise
    if migrate:
        upgrade_to_head(database, keys)
        # The keys the domains' KMS aliases named, as the upgrade's unwraps learnt them: a
        # database whose alias domains' keys worked once since this release can drop one whose
        # key is deleted later (domains.unreadable). Not worth failing a start (or a command)
        # for: the server's background task records them at its next run.
        try:
            record_aliased_keys(database, keys)
        except SQLAlchemyError as exc:
            logger.warning(
                "The keys of domains named by KMS aliases could not be recorded yet (%s); the "
                "server records them later.",
                type(exc).__name__,
            )
    tokens = TokenCodec(keys.system_secret("pagination"))
    return Services(settings=settings, database=database, keys=keys, tokens=tokens)


def _check_keyring_belongs(settings: Settings, database: Database) -> None:
    """Refuse to start on a database whose data was sealed under a keyring this data dir does
    not have. The keyring would be created anew, silently, and every request would then fail
    (500): a second server sharing a PostgreSQL database without a copy of keyring.json, or a
    database copied or restored without it."""
    if settings.keyring_path.exists():
        return
    with before_migrating(database) as conn:
        # A database not migrated yet may not have the tables: then it holds nothing sealed.
        sealed = any(
            inspect(conn).has_table(table.name)
            and conn.execute(select(literal(1)).select_from(table).limit(1)).first() is not None
            # web_user: a user is found by a digest under the system key (users.service).
            for table in (credential, domain, web_user)
        )
    if sealed:
        raise KeyringError(
            f"The keyring {settings.keyring_path} does not exist, but the database already "
            "holds data sealed under a keyring's keys. Copy keyring.json from the data dir of "
            "the server that created this database (every server sharing a database needs the "
            "same keyring), or restore it from a backup."
        )


def _check_keyring_opens(
    settings: Settings, database: Database, keyring: Keyring, keys: KeyManager
) -> None:
    """Refuse to start when keyring.json exists but is not the one the database's data was
    sealed under: a keyring made anew after the file was lost, or copied from another
    installation. The server used to start on it; every signed request then failed (500) and
    /health said ok. Two proofs, neither calling KMS: a stored API secret opens under the
    system cipher (derived from the default local key), and every local key a domain's data
    key is wrapped under is in the keyring, with the version (and that version's material, by
    its fingerprint) the wrapped data key was made with."""
    with before_migrating(database) as conn:
        tables = inspect(conn)
        secret = (
            conn.execute(
                select(credential.c.access_key_id, credential.c.secret_sealed).limit(1)
            ).first()
            if tables.has_table(credential.name)
            else None
        )
        # Every domain's (few rows): its wrapped data key says which version of a local key
        # it needs.
        wrapped_keys = (
            conn.execute(select(domain.c.name, domain.c.key_id, domain.c.wrapped_key)).all()
            if tables.has_table(domain.name)
            else []
        )
    # Every identifier that is not an AWS KMS ARN names a local key: its ARN, or alias/NAME
    # (CreateDomain with DefaultEncryptionKey="alias/billing" stores that).
    absent: set[str] = set()  # the key is not in the keyring at all
    absent_domains: set[str] = set()  # the domains under such keys
    behind: set[str] = set()  # a keyring copied before `keys rotate`: the version is not there
    differ: set[str] = set()  # the version is there, but made by another rotation
    unreadable: set[str] = set()  # the domains under any of these
    for row in wrapped_keys:
        if is_aws_kms_arn(row.key_id):
            continue
        found = keyring.lookup(row.key_id)
        if found is None:
            absent.add(row.key_id)
            absent_domains.add(row.name)
            continue
        header = local_wrap_header(bytes(row.wrapped_key))
        if header.version > len(found.versions) or other_material(header, found):
            unreadable.add(row.name)
        if header.version > len(found.versions):
            behind.add(
                f"{found.key_id} (version {header.version} is needed, it holds 1 to "
                f"{len(found.versions)})"
            )
        elif other_material(header, found):
            here = found.version(header.version)
            assert here is not None and header.fingerprint is not None  # other_material's terms
            # Both fingerprints, as `openprofiles keys list` shows them on each host: they tell
            # which host's keyring holds the material the data keys need.
            differ.add(
                f"{found.key_id} version {header.version} (fingerprint {here.fingerprint.hex()} "
                f"in this keyring, {header.fingerprint.hex()} in the data keys)"
            )
    missing = sorted(absent)
    # Looked up, not made: a check that refuses must leave the keyring as it found it.
    has_default = keyring.find_by_alias(DEFAULT_ALIAS) is not None
    opens = secret is None or (
        has_default
        and secret_opens(
            keys, access_key_id=secret.access_key_id, secret_sealed=bytes(secret.secret_sealed)
        )
    )
    if opens and not missing and not behind and not differ:
        return
    if missing:
        problem = (
            f"it does not hold the local key{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} that domains' data keys are wrapped under"
        )
    elif behind:
        problem = (
            "it does not hold the version of a local key that domains' data keys are wrapped "
            f"under since the key was rotated: {', '.join(sorted(behind))}"
        )
    elif differ:
        problem = (
            "its material for a version of a local key is not the material domains' data keys "
            f"are wrapped under: {', '.join(sorted(differ))} differs (the key was rotated "
            "separately in two keyrings, e.g. on two servers, or in a restored keyring)"
        )
    elif not has_default:
        problem = "it has no default key, under which the stored API credentials are sealed"
    else:
        problem = "its default key does not open the API credentials stored in the database"
    gone = ""
    unreadable |= absent_domains
    if unreadable:
        # The way forward when no copy of a key is left (domains.unreadable), only when the
        # keyring is proven the database's (with another data dir's, every key looks missing),
        # on the operator's word, --key-lost, as no keyring proves a key lost. Named here only
        # for a key missing whole from a keyring not shown to be older than the database: a
        # copy from before `keys create` or `keys rotate` (a server restarted after another
        # rotated), or a missing version, is first of all a keyring to put back, and a
        # copy-pasteable irreversible command would invite the mistake. The drop itself still
        # takes --key-lost there, saying the same first (docs/operations.md).
        with before_migrating(database) as conn:
            unproven = keyring_problem(conn, keys)
            older = keyring_behind(conn, keyring)
        if unproven is None and older is not None:
            gone = (
                f" This keyring is older than the database ({older}): copy the current "
                "keyring.json. Only if no newer copy is left anywhere, see `openprofiles "
                "domains drop-unreadable --help`."
            )
        elif unproven is None and absent_domains:
            commands = ", ".join(
                f"`{LOST_KEY_DROP_COMMAND.format(name=r.name, key=r.key_id)}`"
                for r in sorted(wrapped_keys, key=lambda r: str(r.name))
                if r.name in absent_domains
            )
            gone = (
                " Only if no copy of keyring.json holding a missing key is left anywhere (every "
                "server's data dir, every backup) can the data of the domains under it not be "
                f"read again: then drop them with {commands}."
            )
        elif unproven is None:
            gone = (
                " Only if no copy of keyring.json holding the version is left anywhere, see "
                "`openprofiles domains drop-unreadable --help`."
            )
        else:
            gone = (
                f" A lost key cannot be told from a keyring that is not the database's here "
                f"({unproven}), so no domain can be dropped for it either."
            )
    raise KeyringError(
        f"The keyring {settings.keyring_path} is not the one this database's data was sealed "
        f"under: {problem}. It was made anew, copied from another installation, or is an older "
        "copy than the keys made or rotated since (openprofiles keys create, keys rotate). Put "
        "back keyring.json from the data dir of the server that created this database (every "
        "server sharing a database needs the same keyring, copied again after a key is created "
        f"or rotated), or restore it from a backup.{gone}"
    )


# How often the server records the keys domains' KMS aliases named (domains.unreadable
# .record_aliased_keys): a run with nothing learnt costs no database call.
ALIASED_KEYS_RECORD_SECONDS = 30.0


def background_tasks(services: Services) -> list[PeriodicTask]:
    """What the server does in the background while it serves: purging expired profile objects
    (spec §1.9), starting scheduled probabilistic matching jobs (spec §5.2), finishing rule
    passes a stopped process left PENDING (identity.rule_activation), sending dead letters
    that have not reached their SQS queue yet (spec §6.1) and sending on kept contact records
    a domain can take now (contacts.sweep.kept_records_task)."""
    return [
        expiry_task(services),
        PeriodicTask(
            "scheduled matching jobs",
            lambda: run_due_now(services),
            services.settings.matching_schedule_check_seconds,
        ),
        PeriodicTask(
            "pending rule passes",
            lambda: run_pending_passes(services),
            services.settings.matching_schedule_check_seconds,
        ),
        resend_task(services),
        kept_records_task(services),
        # Off the requests' path: the keys domains' KMS aliases named, learnt by unwrapping.
        PeriodicTask(
            "recording the keys KMS aliases name",
            lambda: record_aliased_keys(services.database, services.keys),
            ALIASED_KEYS_RECORD_SECONDS,
        ),
    ]


class _Application(Starlette):
    """The Starlette application, with one shortcut: requests under /domains (every profile,
    object and search operation of the API) go straight to the API adapter, past Starlette's
    middleware and router, which cost more than a search itself (docs/performance.md, sixth
    session). No other route of the application lies under /domains, and the API adapter
    renders its own errors, so what those requests get is unchanged.

    Every answer, the shortcut's and the router's, carries `X-Content-Type-Options: nosniff`
    (wire.nosniff): added here, once, rather than by each of the API, /static, /health and
    the rest; the pages' own security headers, which include it, are left as they are."""

    def __init__(self, *, api: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api = api
        self._answer = nosniff(self._route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._answer(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_SHORTCUT):
            scope["app"] = self
            await self._api(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


API_SHORTCUT = "/domains"
# What the health check asks of the database: a read of a table every request needs.
_HEALTH_QUERY = select(literal(1)).select_from(domain).limit(1)
logger = logging.getLogger(__name__)


def _cross_origin(api: ASGIApp, origins: tuple[str, ...], router: Router) -> ASGIApp:
    """The API, answering browsers' CORS checks for the configured origins (none: unchanged).

    Only the API's own paths (the model's routes, `router`) grant CORS: the API is mounted at
    the root and so also receives what no other route takes, such as `OPTIONS /ui/sign-in` (a
    page route with another method) or `/contact-records` (a signed machine feed, not for
    browsers); those get the API's plain error, with no CORS header, so a browser refuses the
    cross-origin call. Preflights are answered before authentication, as they must be (a
    browser sends no signature with them); the request that follows is signed and verified as
    any other. No cookies are allowed across origins: the API authenticates by signature
    alone, and the web pages' session cookie must never ride along on another site's
    request."""
    if not origins:
        return api
    cors = CORSMiddleware(
        api,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
        # An SDK signs with authorization, x-amz-date, x-amz-content-sha256, x-amz-user-agent,
        # amz-sdk-* and x-amz-security-token: whatever it asks for may be sent.
        allow_headers=["*"],
        allow_credentials=False,
        expose_headers=["x-amzn-RequestId", "x-amzn-ErrorType", "Date"],
        max_age=600,
    )

    async def only_api_paths(scope: Scope, receive: Receive, send: Send) -> None:
        # A request without an Origin header is no CORS request: no need to look at its path.
        cross_origin = scope["type"] == "http" and any(
            name == b"origin" for name, _ in scope.get("headers", ())
        )
        if cross_origin and router.operations_at(raw_path_of(scope)):
            await cors(scope, receive, send)
        else:
            await api(scope, receive, send)

    return only_api_paths


def create_app(settings: Settings, *, migrate: bool = True) -> Starlette:
    """The application. `migrate=False` when the caller has already brought the schema up to
    date (`openprofiles serve` does it once, before its worker processes start)."""
    # However the app is served (our command, plain uvicorn, a test), its logs stay free of
    # exception messages and locals that could carry personal data (logging_setup).
    logging_setup.install()
    services = build_services(settings, migrate=migrate)
    model = load_service_model()
    registry = build_registry(HANDLER_MODULES, model)
    dispatcher = ApiDispatcher(
        model, registry, codec=services.tokens, audit_reads=settings.audit_api_reads
    )
    # Checks a request's headers before its body is read, then the body (auth.authenticator).
    authenticate = Authenticator(services, settings.max_clock_skew_seconds)

    def invoke(operation: str, principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
        authorize(principal.role, operation)
        handler = registry[operation]
        ctx = RequestContext(services=services, principal=principal)

        def attempt() -> dict[str, Any]:
            ctx.committed_writes = 0
            return handler(ctx, params)

        # A request that lost a race with another process (PostgreSQL) runs again, as long as
        # none of its writes has committed: the caller sees the outcome, never the race. Its
        # errors are told as the caller's role may be told them (auth.policy).
        with errors_shown_to(principal.role):
            answer = retrying(attempt, may_retry=lambda: ctx.committed_writes == 0)
        return answer_shown_to(principal.role, answer)

    def database_problem() -> str | None:
        try:
            with services.read() as tx:
                tx.conn.execute(_HEALTH_QUERY).first()
        except Exception as exc:
            # The type only (logging_setup withholds messages): a URL may hold a password.
            logger.warning("health check: the database did not answer (%s)", type(exc).__name__)
            return "The database does not answer."
        # What the store saw of its latest writes, rather than a write of the check's own: a
        # probe every few seconds would take the one SQLite writer each time.
        failing = services.database.write_problem()
        if failing is not None:
            return f"Writes to the database are failing: {failing}."
        return None

    async def health(_request: Request) -> JSONResponse:
        """200 while the database answers and takes writes, 503 when it does not answer or a
        write failed lately for want of a writable database (disk full, read-only file): a load
        balancer then sends requests to another process, as this one could serve few of them."""
        problem = await run_in_threadpool(database_problem)
        if problem is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)

    api = make_asgi_app(
        dispatcher,
        authenticate,
        invoke,
        on_the_loop_operations=(
            ON_THE_LOOP_OPERATIONS if services.database.is_sqlite else frozenset()
        ),
        check_headers=authenticate.check_headers,
    )
    # Browsers of the configured origins may call the API (CORS); the same app serves the
    # /domains shortcut and the mount, so both answer their checks.
    api = _cross_origin(api, settings.cors_origins, dispatcher.router)
    # Strict-Transport-Security on the API's answers served over HTTPS, as on the pages'
    # (ui.web.hsts, which ui_routes applies to each page): an SDK ignores it, but a browser
    # calling the API (CORS, a signed fetch) or opening /health then keeps to HTTPS for the host.
    api = hsts(api)
    machine_routes = [
        Route("/health", health, methods=["GET"]),
        # Prometheus' scrape (openprofiles.metrics), unless OPENPROFILES_METRICS=off.
        *(
            [Route("/metrics", metrics_endpoint(services), methods=["GET"])]
            if settings.metrics
            else []
        ),
        *contact_routes(services, authenticate),
    ]
    for route in machine_routes:
        route.app = hsts(route.app)
    app = _Application(
        api=api,
        routes=[*machine_routes, *ui_routes(services), Mount("/", app=api)],
        # The authenticator's revocation check may be under way in a thread of its own.
        lifespan=background_lifespan(background_tasks(services), on_shutdown=[authenticate.close]),
    )
    app.state.services = services
    app.state.registry = registry
    # The framework-free request pipeline, for callers that bypass HTTP (benchmarks, tools).
    app.state.api = (dispatcher, authenticate, invoke)
    return app
