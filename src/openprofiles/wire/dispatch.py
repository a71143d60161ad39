"""The request pipeline of the AWS API: route, authenticate, parse, validate, invoke, serialize.

`ApiDispatcher.handle` is independent of any web framework: it takes the raw request parts and
returns (status, headers, body). The app supplies two callables: `authenticate` (verifies
SigV4 against its credential store and returns a principal) and `invoke` (role check,
transaction, handler call). `make_asgi_app` is the thin ASGI adapter around it.

The adapter refuses what the request line and headers alone condemn before it reads the body
(`check_before_body`): a declared body over the limit, then the header part of the signature
(`check_headers`, auth.authenticator). A request the router cannot route is answered without
its body, which nothing would read. An anonymous client cannot make the server hold a body.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol
from urllib.parse import quote, unquote

from botocore.model import OperationModel, ServiceModel
from starlette.concurrency import run_in_threadpool

from openprofiles import audit
from openprofiles.auth.scope import domain_named, refuse_out_of_scope
from openprofiles.blocking import CommitOutcome, Deferred, run_on_the_loop
from openprofiles.crypto.errors import KeyUnusable
from openprofiles.errors import BadRequest, InternalServer, NotImplementedOperation, ServiceError
from openprofiles.log_limits import KEY_PROBLEM_LOG_WINDOW_SECONDS, RepeatedLines
from openprofiles.metrics.events import observe_api_request
from openprofiles.store.conflicts import unavailable
from openprofiles.wire.body_size import largest_bodies
from openprofiles.wire.errors import (
    MethodNotAllowed,
    PayloadTooLarge,
    UnknownOperation,
    render_error,
)
from openprofiles.wire.pagination import TokenCodec
from openprofiles.wire.parse import parse_request
from openprofiles.wire.registry import Handler
from openprofiles.wire.routing import Router
from openprofiles.wire.serialize import serialize_output
from openprofiles.wire.validate import validate_input

logger = logging.getLogger("openprofiles.wire")

# authenticate(method, raw_path, raw_query, headers, body) -> principal
Authenticate = Callable[[str, str, str, Mapping[str, str], bytes], Any]
# invoke(operation_name, principal, params) -> result dict (None is taken as {})
Invoke = Callable[[str, Any, dict[str, Any]], dict[str, Any] | None]
WireResponse = tuple[int, dict[str, str], bytes]


class HeadersChecked(Protocol):
    """A request whose headers passed authentication's first step; the body decides the rest."""

    def principal(self, body: bytes) -> Any:
        """The caller, once `body` proves the signature; the API error else."""
        ...


# check_headers(method, raw_path, raw_query, headers) -> HeadersChecked, or the API error of
# a request its headers show to be unauthenticated (auth.authenticator.Authenticator)
CheckHeaders = Callable[[str, str, str, Mapping[str, str]], HeadersChecked]

# The body limit of a request the model does not bound (and of an unknown path), and the least
# of any operation: an operation whose largest model-valid body is larger gets that instead
# (wire.body_size; BatchPutProfileObject's is about 30.7 MB). Low enough to bound memory.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class ApiDispatcher:
    """Runs one AWS API request through the wire pipeline.

    `codec` is the NextToken codec of this server; the dispatcher does not use it itself but
    holds it so the app hands one instance to the handlers. `max_body_bytes` is the body limit
    of what the model does not bound, and the least of any operation (`body_limit`).
    `audit_reads`: the reads of customers' personal data are audit-logged too
    (Settings.audit_api_reads; `audited`).
    """

    def __init__(
        self,
        service_model: ServiceModel,
        registry: Mapping[str, Handler],
        router: Router | None = None,
        codec: TokenCodec | None = None,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        audit_reads: bool = False,
    ) -> None:
        self.service_model = service_model
        self.registry = registry
        self.router = router if router is not None else Router(service_model)
        self.codec = codec
        self.max_body_bytes = max_body_bytes
        self.audit_reads = audit_reads
        self._largest_bodies = largest_bodies(service_model)

    def audited(self, operation: str | None) -> bool:
        """Whether the audit log has a line for each request of `operation` (audit.audited)."""
        return audit.audited(operation, reads=self.audit_reads)

    def operation_at(self, method: str, raw_path: str) -> str | None:
        """The operation `method` and `raw_path` call, or None (no route, or a path the router
        cannot read: `handle` reports that)."""
        found = self.route_at(method, raw_path)
        return found[0] if found else None

    def route_at(self, method: str, raw_path: str) -> tuple[str, dict[str, str]] | None:
        """The operation `method` and `raw_path` call with the path's labels, or None."""
        try:
            refuse_dot_segments(raw_path)
            return self.router.match(method, raw_path)
        except Exception:
            return None

    def body_limit(self, operation: str | None) -> int:
        """The most bytes of body a request of `operation` may have: never less than the
        largest body a model-valid request of it can have."""
        largest = self._largest_bodies.get(operation, 0) if operation else 0
        return max(self.max_body_bytes, largest)

    def handle(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        authenticate: Authenticate,
        invoke: Invoke,
    ) -> WireResponse:
        """The answer to one request. Its handler never defers here: it may only where the API
        adapter allows it, on the event loop (`start`)."""
        answered = self.start(method, raw_path, raw_query, headers, body, authenticate, invoke)
        if isinstance(answered, PendingAnswer):
            raise RuntimeError("a handler deferred its answer where it may not")
        return answered

    def start(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        authenticate: Authenticate,
        invoke: Invoke,
    ) -> WireResponse | PendingAnswer:
        """The answer to one request, or, when its handler deferred it (blocking.Deferred), the
        answer to await."""
        request_id = str(uuid.uuid4())
        try:
            answered = self._run(
                method, raw_path, raw_query, headers, body, authenticate, invoke, request_id
            )
        except Exception as error:
            operation, labels = self.route_at(method, raw_path) or ("-", {})
            answered = _render_failure(error, operation, request_id, labels.get("DomainName"))
        if isinstance(answered, PendingAnswer):
            return answered
        answered[1]["x-amzn-RequestId"] = request_id
        return answered

    def _run(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        authenticate: Authenticate,
        invoke: Invoke,
        request_id: str,
    ) -> WireResponse | PendingAnswer:
        refuse_dot_segments(raw_path)
        found = self.router.match(method, raw_path)
        if found is None:
            accepted = self.router.operations_at(raw_path)
            if accepted:
                raise MethodNotAllowed(method.upper(), raw_path, accepted)
            raise UnknownOperation(f"No operation matches {method.upper()} {raw_path}.")
        operation, uri_params = found
        limit = self.body_limit(operation)
        if len(body) > limit:
            raise PayloadTooLarge.over(limit)
        principal = authenticate(method, raw_path, raw_query, headers, body)
        # A key limited to some domains is refused the others before its body is parsed.
        refuse_out_of_scope(principal, operation, uri_params, audited=self.audited(operation))
        operation_model = self.service_model.operation_model(operation)
        params = parse_request(operation_model, uri_params, parse_query(raw_query), headers, body)
        validate_input(operation_model.input_shape, params)
        if operation not in self.registry:
            raise NotImplementedOperation(operation)
        result = invoke(operation, principal, params)
        if isinstance(result, Deferred):
            return PendingAnswer(operation_model, result, request_id, uri_params.get("DomainName"))
        return serialize_output(operation_model, result or {})


class PendingAnswer:
    """The answer to a request whose handler deferred it: `wait()` for it."""

    def __init__(
        self,
        operation_model: OperationModel,
        deferred: Deferred,
        request_id: str,
        domain_name: str | None = None,
    ) -> None:
        self._operation_model = operation_model
        self._deferred = deferred
        self._request_id = request_id
        self._domain_name = domain_name

    async def wait(self) -> WireResponse:
        try:
            result = await self._deferred.answer
            answered = serialize_output(self._operation_model, result or {})
        except Exception as error:
            answered = _render_failure(
                error, self._operation_model.name, self._request_id, self._domain_name
            )
        answered[1]["x-amzn-RequestId"] = self._request_id
        return answered


def _render_failure(
    error: Exception, operation: str, request_id: str, domain_name: str | None = None
) -> WireResponse:
    """An API error as the client gets it; any other error as an internal error, logged.
    `domain_name` is the path's DomainName, if it has one."""
    if isinstance(error, ServiceError):
        _log_withheld_key_problem(error, operation, request_id, domain_name)
        return render_error(error, request_id)
    if (busy := unavailable(error)) is not None:
        # A lock timeout or a full lock table outside `retrying` (a read): a 503, not a 500.
        logger.warning(
            "%s in %s (request id %s): answered 503", type(error).__name__, operation, request_id
        )
        return render_error(busy, request_id)
    # Never log the body or the parsed params: they carry personal data.
    logger.error(
        "unhandled %s in %s (request id %s)",
        type(error).__name__,
        operation,
        request_id,
        exc_info=error,
    )
    internal = InternalServer(f"An internal error occurred; request id {request_id}")
    return render_error(internal, request_id)


def _report_left_out(key: tuple[str | None, str], left_out: int) -> None:
    """The count of a key problem's lines left out, for a (domain, message) the limiter stops
    following (log_limits.RepeatedLines) before a request's line of it said it."""
    domain_name, message = key
    logger.warning(
        "API (domain %s): a key cannot be used: %s%s",
        domain_name or "-",
        message,
        _key_problem_lines.left_out_note(left_out, "requests of the domain"),
    )


# A key problem withheld from API callers is logged at most once per domain and message in
# KEY_PROBLEM_LOG_WINDOW_SECONDS (log_limits): while a KMS is down, every request of its domains
# fails, and a line for each would bury the rest of the log.
_key_problem_lines: RepeatedLines[tuple[str | None, str]] = RepeatedLines(
    KEY_PROBLEM_LOG_WINDOW_SECONDS, report=_report_left_out
)


def _log_withheld_key_problem(
    error: ServiceError, operation: str, request_id: str, domain_name: str | None = None
) -> None:
    """Log what the caller was not told of a key that cannot be used: KeyUnusable's operator
    message (the setting to set, the KMS endpoint, the command to run), which an API caller
    must not read (the server's layout), goes to the operator's log, as the pages log it
    (ui.web): else a KMS that is not set up leaves nothing there but a 400 in the audit line.
    It names keys and settings, no personal value (KeyUnusable says so). Once per domain and
    message in KEY_PROBLEM_LOG_WINDOW_SECONDS, the next line saying how many were left out."""
    cause: BaseException | None = error.__cause__
    for _ in range(3):  # the KeyUnusable is the cause, or the cause's cause (domain_cipher)
        if cause is None or isinstance(cause, KeyUnusable):
            break
        cause = cause.__cause__
    if not isinstance(cause, KeyUnusable) or cause.message == cause.caller_message:
        return
    lines = _key_problem_lines
    left_out = lines.admit((domain_name, cause.message))
    if left_out is None:
        return
    logger.warning(
        "%s (request id %s, domain %s): a key cannot be used: %s%s",
        operation,
        request_id,
        domain_name or "-",
        cause.message,
        lines.left_out_note(left_out, "requests of the domain"),
    )


def refuse_dot_segments(raw_path: str) -> None:
    """BadRequest for a path with a '.' or '..' segment (as sent or percent-encoded).

    SigV4 signs the path with dot segments removed (wire.sigv4.canonical_path), while the
    router matches it as sent: `DELETE /domains/d/workflows/..` would be checked against the
    signature of `DELETE /domains/d`, a DeleteDomain. No operation's path has such a segment,
    and botocore sends a label that is '.' or '..' (a model-valid WorkflowId or AttributeName)
    unencoded and signs it removed, so routing on the normalised path instead would turn
    DeleteWorkflow(WorkflowId='..') into DeleteDomain: refusing it is the only safe answer.
    An empty segment needs nothing here: the router refuses an empty label with a BadRequest
    (wire.routing), so no such path reaches an operation other than the one it names.
    """
    path = raw_path.split("?", 1)[0]
    if "." not in path and "%2" not in path:  # the common case, at the cost of a scan
        return
    if any(unquote(part) in (".", "..") for part in path.split("/")):
        raise BadRequest(
            f"The path {path} has a '.' or '..' segment, which no operation accepts: "
            "SigV4 signs the path without it, so it would not name what was signed."
        )


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """Split a raw query string into decoded (name, value) pairs, keeping repeats and order.

    '+' is kept literally (RFC 3986), as botocore encodes a real '+' as %2B. An escape that is
    not UTF-8 (`%FF`) is a BadRequest: replaced with U+FFFD it would be another value than the
    one sent (a NextToken, a key value), silently.
    """
    pairs = []
    try:
        for part in raw_query.split("&"):
            if part:
                name, _, value = part.partition("=")
                pairs.append((unquote(name, errors="strict"), unquote(value, errors="strict")))
    except UnicodeDecodeError:
        raise BadRequest("The query string is not valid UTF-8.") from None
    return pairs


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def make_asgi_app(
    dispatcher: ApiDispatcher,
    authenticate: Authenticate,
    invoke: Invoke,
    *,
    on_the_loop_operations: frozenset[str] = frozenset(),
    check_headers: CheckHeaders | None = None,
) -> ASGIApp:
    """An ASGI app serving the AWS API at the root of its mount.

    It must see the path as the client sent it (`raw_path`): SigV4 signs the encoded path and
    labels may contain an encoded '/'. The dispatcher runs in a worker thread because handlers
    do blocking database work, except for `on_the_loop_operations`: short requests that run on
    the event loop's thread and move to a worker thread only when they would wait
    (openprofiles.blocking).

    `check_headers` is the first step of `authenticate`, run before the body is read (the
    module docstring says why); without it, as for an app that authenticates only whole
    requests, every request's body is read before it is authenticated.
    """
    first_step = check_headers if check_headers is not None else _whole_requests(authenticate)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        arrived = time.perf_counter()
        method = scope["method"]
        raw_path = raw_path_of(scope)
        raw_query = scope.get("query_string", b"").decode("latin-1")
        headers: dict[str, str] = {}
        for name_bytes, value_bytes in scope.get("headers", []):
            name = name_bytes.decode("latin-1").lower()
            value = value_bytes.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        # An unknown path or one the router cannot read is reported by the dispatcher, in a
        # thread like any other request, and before authentication: without the body.
        route = dispatcher.route_at(method, raw_path)
        operation = route[0] if route else None
        # A request that may change state (or reads personal data, when those are audited) is
        # followed through authentication and its handler, to say in the audit log who asked
        # and what it named (openprofiles.audit).
        seen = _AuditTrail(invoke) if dispatcher.audited(operation) else None
        answered: WireResponse
        if route is None:
            request = (method, raw_path, raw_query, headers, b"", authenticate, invoke)
            answered = await run_in_threadpool(dispatcher.handle, *request)
        else:
            limit = dispatcher.body_limit(operation)
            try:
                checked = await check_before_body(
                    first_step, method, raw_path, raw_query, headers, limit
                )
                body, too_large = await read_body(receive, limit, headers)
                if too_large:
                    raise PayloadTooLarge.over(limit)
            except ClientGone:
                return  # nothing was asked in full: nothing to run, answer, count or audit
            except Exception as error:
                answered = _render_failure(
                    error, route[0], str(uuid.uuid4()), route[1].get("DomainName")
                )
            else:

                def finish(_m: str, _p: str, _q: str, _h: Mapping[str, str], body: bytes) -> Any:
                    # The request's own authentication, its headers checked: only the body's
                    # part is left.
                    return checked.principal(body)

                request = (
                    method,
                    raw_path,
                    raw_query,
                    headers,
                    body,
                    seen.authenticating(finish) if seen else finish,
                    seen.invoke if seen else invoke,
                )
                if operation in on_the_loop_operations:
                    started, shared_commit = await run_on_the_loop(
                        lambda: dispatcher.start(*request), may_defer=True
                    )
                    if isinstance(started, PendingAnswer):
                        answered = await started.wait()
                    elif shared_commit is not None:
                        answered = await _after_shared_commit(started, shared_commit)
                    else:
                        answered = started
                else:
                    answered = await run_in_threadpool(dispatcher.handle, *request)
        status, response_headers, response_body = answered
        if seen is not None and route is not None:
            # Here, once: the status is final (a shared commit that failed has turned it into
            # an internal error), and a request run again elsewhere (blocking.WouldBlock) has
            # not been logged by its first attempt.
            audit.api_request(
                route[0],
                # The path's DomainName, or the domain of a tag operation's resourceArn.
                domain_name=domain_named(route[1]),
                access_key_id=seen.access_key_id,
                status=status,
                error=response_headers.get("x-amzn-ErrorType"),
                profile_id=seen.profile_id,
                answered=seen.answered,
            )
        observe_api_request(operation, status, response_headers.get("x-amzn-ErrorType"), arrived)
        await _respond(send, status, response_headers, response_body)

    return app


async def check_before_body(
    check_headers: CheckHeaders,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    limit: int,
) -> HeadersChecked:
    """What can be refused of a request before its body is read, in the order the whole
    request would be refused: a declared body over `limit` bytes (PayloadTooLarge), then its
    signature as far as the headers show (`check_headers`). Shared by the API and the contact
    feeds; `headers` has lower-case names.

    The check runs on the event loop, leaving it for a worker thread only when it would wait
    (a credential not cached yet: auth.authenticator).

    The bytes that requests past this check hold while their bodies arrive are not bounded
    in total, on purpose. Such a request names an existing access key and a current date, so
    only a client that knows a key id can send one: key ids are not secret, but they are not
    public either (an admin's listing, the audit log), and a key's own holder may send bodies
    of the operation's limit anyway. A process-wide budget could not tell that holder from
    someone who only knows the id until the body is read, so whoever filled it would refuse
    every large batch of every caller: a denial of service traded for another, and a shared
    counter on every request. Connections are what bounds such a client; limit them where the
    server is exposed (a proxy, `uvicorn --limit-concurrency`).
    """
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge.over(limit)
    checked, _ = await run_on_the_loop(lambda: check_headers(method, raw_path, raw_query, headers))
    return checked


class _WholeRequest:
    """The first step of an `authenticate` that checks only whole requests: it checks nothing
    before the body, and all of it with the body."""

    __slots__ = ("_authenticate", "_request")

    def __init__(
        self, authenticate: Authenticate, request: tuple[str, str, str, Mapping[str, str]]
    ) -> None:
        self._authenticate = authenticate
        self._request = request

    def principal(self, body: bytes) -> Any:
        return self._authenticate(*self._request, body)


def _whole_requests(authenticate: Authenticate) -> CheckHeaders:
    def check(
        method: str, raw_path: str, raw_query: str, headers: Mapping[str, str]
    ) -> HeadersChecked:
        return _WholeRequest(authenticate, (method, raw_path, raw_query, headers))

    return check


class _AuditTrail:
    """What the audit log says of one request beyond its route and answer: the access key id
    that signed it (None until verified) and the profile it named or created. It wraps the
    app's authentication and `invoke`, which see the principal and the parsed input."""

    __slots__ = ("_invoke", "access_key_id", "answered", "profile_id")

    def __init__(self, invoke: Invoke) -> None:
        self._invoke = invoke
        self.access_key_id: str | None = None
        self.profile_id: str | None = None
        # A read of personal data's answer: the profiles it held (audit.profiles_answered).
        self.answered: list[str] | None = None

    def authenticating(self, authenticate: Authenticate) -> Authenticate:
        """`authenticate`, noting the access key id of the principal it returns."""

        def noted(
            method: str,
            raw_path: str,
            raw_query: str,
            headers: Mapping[str, str],
            body: bytes,
        ) -> Any:
            principal = authenticate(method, raw_path, raw_query, headers, body)
            self.access_key_id = getattr(principal, "access_key_id", None)
            return principal

        return noted

    def invoke(self, operation: str, principal: Any, params: dict[str, Any]) -> Any:
        self.profile_id = audit.profile_named(params)
        result = self._invoke(operation, principal, params)
        if isinstance(result, Mapping):
            if self.profile_id is None:
                self.profile_id = audit.profile_named(result)  # the one CreateProfile made
            if operation in audit.PERSONAL_READS:
                self.answered = audit.profiles_answered(result)
        return result


def raw_path_of(scope: Scope) -> str:
    """The path as the client sent it, still percent-encoded: what SigV4 signs and what the
    router matches (a label may hold an encoded '/')."""
    raw_path_bytes = scope.get("raw_path")
    if raw_path_bytes:
        return str(raw_path_bytes.decode("latin-1"))
    return quote(scope["path"], safe="/~!$&'()*+,;=:@")


async def _after_shared_commit(answered: WireResponse, outcome: CommitOutcome) -> WireResponse:
    """The answer of a request whose write is in a shared transaction (store.group_commit),
    once that has committed; an internal error if it failed, for nothing of it was applied."""
    # Shielded: a client that goes away must not cancel the other members' commit.
    failure = await asyncio.shield(outcome)
    if failure is None:
        return answered
    request_id = answered[1].get("x-amzn-RequestId") or str(uuid.uuid4())
    internal = InternalServer(f"An internal error occurred; request id {request_id}")
    status, headers, body = render_error(internal, request_id)
    headers["x-amzn-RequestId"] = request_id
    return status, headers, body


async def _respond(send: Send, status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Send the answer as two ASGI messages: a Starlette Response costs several times this on a
    request whose own work is a fraction of a millisecond."""
    raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
    raw_headers.append((b"content-length", str(len(body)).encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class ClientGone(Exception):  # noqa: N818 - an event, not an error of the server's
    """The client closed the connection before its request's body was complete: there is no
    request to run, and nobody to answer."""


async def read_body(receive: Receive, limit: int, headers: Mapping[str, str]) -> tuple[bytes, bool]:
    """The request body and whether it passed `limit` bytes (reading stops there: an oversized
    body never costs its size in memory). Shared by the API and the contact feeds; `headers`
    has lower-case names.

    ClientGone when the client leaves before the body's end: what came so far is not the
    request (it was read as the whole body, and run: refused by its signature, but answered
    to no one, and counted and audited as a request). A request whose headers say it has no
    body is complete with them: a client that sent it whole and closed its side at once (a
    half-close) may be reported gone before the empty body is, and is not one that left."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not chunks and not _has_body(headers):
                return b"", False
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks), False


def _has_body(headers: Mapping[str, str]) -> bool:
    """Whether the request's headers announce a body (HTTP/1.1: a Content-Length above 0, or a
    Transfer-Encoding; uvicorn's parser has refused malformed ones already)."""
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length", "0").strip()
    return length != "0"


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
