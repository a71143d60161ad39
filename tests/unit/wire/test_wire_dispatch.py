"""The dispatcher end to end: real boto3 requests in, botocore-parsed responses out."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HeadersDict
from botocore.credentials import Credentials
from botocore.parsers import create_parser
from tests.support.event_loop import run_in_fresh_thread
from tests.unit.wire.helpers import ACCESS_KEY, SECRET_KEY, Capture, CapturedRequest, make_client

from openprofiles.blocking import WouldBlock, reply_after
from openprofiles.errors import NotFound
from openprofiles.wire.dispatch import ApiDispatcher, make_asgi_app
from openprofiles.wire.model import load_service_model
from openprofiles.wire.pagination import TokenCodec
from openprofiles.wire.routing import Router
from openprofiles.wire.sigv4 import verify_request

MODEL = load_service_model()
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
WORKFLOW = "0123456789abcdef0123456789abcdef"


def authenticate(method: str, raw_path: str, raw_query: str, headers: Any, body: bytes) -> str:
    return verify_request(
        method,
        raw_path,
        raw_query,
        headers,
        body,
        lambda key: SECRET_KEY if key == ACCESS_KEY else None,
        datetime.now(UTC),
        900,
    )


def trust_everyone(*_: Any) -> str:
    return "anyone"


class App:
    """A stand-in for the real app: three implemented operations with canned behaviour."""

    def __init__(self) -> None:
        self.codec = TokenCodec(b"k" * 32)
        handlers = {name: self._unused for name in ("GetDomain", "ListDomains", "CreateDomain")}
        self.dispatcher = ApiDispatcher(MODEL, handlers, Router(MODEL), self.codec)
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    @staticmethod
    def _unused(*_: Any) -> None:
        raise AssertionError("the app calls handlers through invoke")

    def invoke(self, operation: str, principal: Any, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, principal, params))
        if operation == "GetDomain":
            if params["DomainName"] == "missing":
                raise NotFound("Domain missing does not exist.")
            if params["DomainName"] == "crash":
                raise RuntimeError("boom")
            return {
                "DomainName": params["DomainName"],
                "DefaultExpirationDays": 7,
                "CreatedAt": CREATED,
                "LastUpdatedAt": CREATED.timestamp(),
            }
        if operation == "ListDomains":
            scope = "ListDomains"
            start = (
                self.codec.decode(scope, params["NextToken"])["i"] if "NextToken" in params else 0
            )
            return {"Items": [], "NextToken": self.codec.encode(scope, {"i": start + 1})}
        return {
            "DomainName": params["DomainName"],
            "DefaultExpirationDays": 7,
            "CreatedAt": CREATED,
            "LastUpdatedAt": CREATED,
        }

    def serve(self, request: CapturedRequest) -> tuple[int, dict[str, str], bytes]:
        return self.dispatcher.handle(
            request.method,
            request.raw_path,
            request.raw_query,
            request.headers,
            request.body,
            authenticate,
            self.invoke,
        )


@pytest.fixture
def app() -> App:
    return App()


def _client(app: App, **credentials: str) -> Any:
    return make_client(Capture(server=app.serve), **credentials)


def _parse_error(response: tuple[int, dict[str, str], bytes]) -> dict[str, Any]:
    status, headers, body = response
    parsed = create_parser("rest-json").parse(
        {"status_code": status, "headers": HeadersDict(headers), "body": body},
        MODEL.operation_model("GetDomain").output_shape,
    )
    return {"status": status, **parsed["Error"]}


def test_success_with_timestamps(app: App) -> None:
    response = _client(app).get_domain(DomainName="d")
    assert response["CreatedAt"] == CREATED
    assert response["LastUpdatedAt"] == CREATED
    assert isinstance(response["CreatedAt"], datetime)
    assert response["ResponseMetadata"]["RequestId"]
    assert app.calls == [("GetDomain", ACCESS_KEY, {"DomainName": "d"})]


def test_request_ids_are_unique(app: App) -> None:
    client = _client(app)
    ids = {client.get_domain(DomainName="d")["ResponseMetadata"]["RequestId"] for _ in range(3)}
    assert len(ids) == 3


def test_validation_error_reaches_boto3(app: App) -> None:
    client = _client(app, validate="no")
    with pytest.raises(client.exceptions.BadRequestException) as caught:
        client.create_domain(DomainName="bad name", DefaultExpirationDays=0)
    error = caught.value.response["Error"]
    assert error["Code"] == "BadRequestException"
    assert error["Message"].startswith("2 validation errors detected: ")
    assert "DefaultExpirationDays must be at least 1" in error["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert app.calls == []


def test_service_error_from_handler(app: App) -> None:
    client = _client(app)
    with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
        client.get_domain(DomainName="missing")
    assert caught.value.response["Error"]["Message"] == "Domain missing does not exist."
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_unexpected_exception_is_logged_without_data(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(app, validate="no")
    with (
        caplog.at_level(logging.ERROR, logger="openprofiles.wire"),
        pytest.raises(client.exceptions.InternalServerException) as caught,
    ):
        client.get_domain(DomainName="crash")
    response = caught.value.response
    request_id = response["ResponseMetadata"]["RequestId"]
    assert response["Error"]["Message"] == f"An internal error occurred; request id {request_id}"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
    [record] = caplog.records
    assert record.name == "openprofiles.wire"
    assert request_id in record.getMessage() and "GetDomain" in record.getMessage()
    assert "crash" not in record.getMessage()


def test_unimplemented_operation_after_authentication(app: App) -> None:
    client = _client(app)
    with pytest.raises(client.exceptions.ClientError) as caught:
        client.get_workflow(DomainName="d", WorkflowId=WORKFLOW)
    assert caught.value.response["Error"]["Code"] == "NotImplementedException"
    assert "GetWorkflow" in caught.value.response["Error"]["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    # Without credentials the caller learns nothing about what is implemented.
    unsigned = app.dispatcher.handle(
        "GET", f"/domains/d/workflows/{WORKFLOW}", "", {}, b"", authenticate, app.invoke
    )
    assert _parse_error(unsigned) == {
        "status": 403,
        "Code": "MissingAuthenticationTokenException",
        "Message": "Missing Authentication Token",
    }


def test_wrong_secret_and_unknown_key(app: App) -> None:
    client = _client(app, secret_key="wrong")
    with pytest.raises(client.exceptions.ClientError) as caught:
        client.get_domain(DomainName="d")
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    client = _client(app, access_key="AKIDOTHER")
    with pytest.raises(client.exceptions.ClientError) as caught:
        client.get_domain(DomainName="d")
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert app.calls == []


def test_unknown_route(app: App) -> None:
    status, headers, body = app.dispatcher.handle(
        "GET", "/nowhere", "", {}, b"", authenticate, app.invoke
    )
    assert headers["x-amzn-RequestId"]
    assert _parse_error((status, headers, body)) == {
        "status": 404,
        "Code": "UnknownOperationException",
        "Message": "No operation matches GET /nowhere.",
    }


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
def test_a_known_path_with_another_method(app: App, method: str) -> None:
    # It used to answer 404 UnknownOperationException, as if the path did not exist.
    path = "/domains/d/profiles/keys" if method != "PATCH" else "/domains/d"
    status, headers, body = app.dispatcher.handle(
        method, path, "", {}, b"", authenticate, app.invoke
    )
    error = _parse_error((status, headers, body))
    assert error["status"] == 405 and error["Code"] == "MethodNotAllowedException"
    if method == "PATCH":
        assert error["Message"] == (
            "PATCH is not allowed on /domains/d; it accepts DELETE (DeleteDomain), "
            "GET (GetDomain), POST (CreateDomain), PUT (UpdateDomain)."
        )
        assert headers["Allow"] == "DELETE, GET, POST, PUT"
    else:
        assert error["Message"] == (
            f"{method} is not allowed on /domains/d/profiles/keys; it accepts POST (AddProfileKey)."
        )
        assert headers["Allow"] == "POST"
    assert app.calls == []


def test_next_token_round_trip_and_tampering(app: App) -> None:
    client = _client(app)
    token = client.list_domains()["NextToken"]
    assert client.list_domains(NextToken=token)["NextToken"] != token
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    with pytest.raises(client.exceptions.BadRequestException) as caught:
        client.list_domains(NextToken=tampered)
    assert caught.value.response["Error"]["Message"] == "The NextToken is invalid or has expired."


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"{not json", "could not be parsed as JSON"), (b"[1]", "must be a JSON object")],
)
def test_bad_json_body(app: App, body: bytes, message: str) -> None:
    response = app.dispatcher.handle("POST", "/domains/d", "", {}, body, trust_everyone, app.invoke)
    error = _parse_error(response)
    assert error["status"] == 400 and error["Code"] == "BadRequestException"
    assert message in error["Message"]
    assert app.calls == []


def test_body_too_large(app: App) -> None:
    app.dispatcher.max_body_bytes = 10
    # GetDomain has no body members: the least limit is its limit.
    response = app.dispatcher.handle(
        "GET", "/domains/d", "", {}, b"{" + b" " * 20 + b"}", trust_everyone, app.invoke
    )
    error = _parse_error(response)
    assert error["status"] == 413 and error["Code"] == "RequestEntityTooLargeException"
    assert error["Message"] == "The request body exceeds 10 bytes."


def _asgi_call(asgi: Any, request: CapturedRequest) -> tuple[int, dict[str, str], bytes]:
    """Drive the ASGI app as a server like uvicorn would (raw_path as sent on the wire)."""
    scope = {
        "type": "http",
        "method": request.method,
        "path": unquote(request.raw_path),
        "raw_path": request.raw_path.encode(),
        "query_string": request.raw_query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.items()],
    }
    chunks = [request.body[:5], request.body[5:]]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    run_in_fresh_thread(asgi(scope, receive, send))
    start, *bodies = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in bodies)


def test_asgi_app_serves_signed_requests(app: App) -> None:
    capture = Capture()
    arn = "arn:aws:profile:us-east-1:000000000000:domains/name"
    client = make_client(capture)
    client.get_domain(DomainName="d")
    client.list_tags_for_resource(resourceArn=arn)
    client.create_domain(DomainName="d", DefaultExpirationDays=7)
    asgi = make_asgi_app(app.dispatcher, authenticate, app.invoke)
    get, tags, create = capture.requests

    status, headers, body = _asgi_call(asgi, get)
    assert status == 200, body
    assert json.loads(body)["CreatedAt"] == CREATED.timestamp()
    assert headers["x-amzn-requestid"]
    # The signature verified over the encoded ARN label; the operation is not implemented.
    status, headers, body = _asgi_call(asgi, tags)
    assert status == 501, body
    assert headers["x-amzn-errortype"] == "NotImplementedException"
    # A body that arrives in several chunks is reassembled before the signature check.
    status, _, body = _asgi_call(asgi, create)
    assert status == 200, body
    assert app.calls[-1] == (
        "CreateDomain",
        ACCESS_KEY,
        {"DomainName": "d", "DefaultExpirationDays": 7},
    )
    too_large = CapturedRequest("GET", "/domains/d", "", {}, b"x" * 100)
    app.dispatcher.max_body_bytes = 10
    assert _asgi_call(asgi, too_large)[0] == 413


# ------------------------------------------------- requests on the event loop (blocking.py)


def _on_the_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LoopApp(App):
    """Records where each call ran; GetDomain's first `blocks` calls on the loop raise
    WouldBlock with `retry_after`."""

    def __init__(self, blocks: int = 0, retry_after: Any = None) -> None:
        super().__init__()
        self.blocks = blocks
        self.retry_after = retry_after
        self.where: list[tuple[str, bool]] = []

    def invoke(self, operation: str, principal: Any, params: dict[str, Any]) -> dict[str, Any]:
        on_loop = _on_the_event_loop()
        self.where.append((operation, on_loop))
        if operation == "GetDomain" and on_loop and self.blocks:
            self.blocks -= 1
            raise WouldBlock("the writer lock is taken", self.retry_after)
        return super().invoke(operation, principal, params)


def _signed(*calls: str) -> list[CapturedRequest]:
    capture = Capture()
    client = make_client(capture)
    for call in calls:
        if call == "GetDomain":
            client.get_domain(DomainName="d")
        else:
            client.create_domain(DomainName="d", DefaultExpirationDays=7)
    return capture.requests


def test_listed_operations_run_on_the_event_loop_the_rest_in_a_thread() -> None:
    app = LoopApp()
    asgi = make_asgi_app(
        app.dispatcher, authenticate, app.invoke, on_the_loop_operations=frozenset({"GetDomain"})
    )
    get, create = _signed("GetDomain", "CreateDomain")
    assert _asgi_call(asgi, get)[0] == 200
    assert _asgi_call(asgi, create)[0] == 200
    assert app.where == [("GetDomain", True), ("CreateDomain", False)]
    # Without the list, everything runs in worker threads (PostgreSQL).
    plain = make_asgi_app(app.dispatcher, authenticate, app.invoke)
    assert _asgi_call(plain, get)[0] == 200
    assert app.where[-1] == ("GetDomain", False)


def test_a_request_that_would_block_runs_again_in_a_thread() -> None:
    app = LoopApp(blocks=1)
    asgi = make_asgi_app(
        app.dispatcher, authenticate, app.invoke, on_the_loop_operations=frozenset({"GetDomain"})
    )
    (get,) = _signed("GetDomain")
    status, _, body = _asgi_call(asgi, get)
    assert status == 200, body
    assert json.loads(body)["DomainName"] == "d"
    assert app.where == [("GetDomain", True), ("GetDomain", False)]


def test_a_request_told_what_to_await_tries_again_on_the_loop() -> None:
    events: list[str] = []

    async def retry_after() -> Any:
        events.append("awaited")
        return lambda: events.append("given back")

    app = LoopApp(blocks=2, retry_after=retry_after)
    asgi = make_asgi_app(
        app.dispatcher, authenticate, app.invoke, on_the_loop_operations=frozenset({"GetDomain"})
    )
    (get,) = _signed("GetDomain")
    assert _asgi_call(asgi, get)[0] == 200
    assert app.where == [("GetDomain", True)] * 3
    # What was reserved for a try is given back after that try, whatever its outcome.
    assert events == ["awaited", "given back", "awaited", "given back"]


def test_a_request_that_keeps_finding_the_lock_taken_ends_in_a_thread() -> None:
    async def retry_after() -> None:
        return None

    app = LoopApp(blocks=10_000, retry_after=retry_after)
    asgi = make_asgi_app(
        app.dispatcher, authenticate, app.invoke, on_the_loop_operations=frozenset({"GetDomain"})
    )
    (get,) = _signed("GetDomain")
    assert _asgi_call(asgi, get)[0] == 200
    on_loop = [where for op, where in app.where]
    assert on_loop[-1] is False and all(on_loop[:-1]) and len(on_loop) > 2


class SharedCommitApp(LoopApp):
    """GetDomain's write joins a shared transaction (store.group_commit) whose commit the
    loop resolves in its next turn, with `failure`."""

    def __init__(self, failure: BaseException | None) -> None:
        super().__init__()
        self.failure = failure

    def invoke(self, operation: str, principal: Any, params: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[BaseException | None] = loop.create_future()
        loop.call_soon(outcome.set_result, self.failure)
        reply_after(outcome)
        return super().invoke(operation, principal, params)


def test_an_answer_waits_for_the_shared_commit_and_fails_with_it() -> None:
    committed = SharedCommitApp(failure=None)
    asgi = make_asgi_app(
        committed.dispatcher,
        authenticate,
        committed.invoke,
        on_the_loop_operations=frozenset({"GetDomain"}),
    )
    (get,) = _signed("GetDomain")
    status, _, body = _asgi_call(asgi, get)
    assert status == 200, body
    assert json.loads(body)["DomainName"] == "d"

    failed = SharedCommitApp(failure=RuntimeError("disk I/O error"))
    asgi = make_asgi_app(
        failed.dispatcher,
        authenticate,
        failed.invoke,
        on_the_loop_operations=frozenset({"GetDomain"}),
    )
    status, headers, body = _asgi_call(asgi, get)
    # The handler succeeded, but nothing of it was applied: the client must not read success.
    assert status == 500, body
    assert headers["x-amzn-errortype"] == "InternalServerException"
    assert headers["x-amzn-requestid"] in json.loads(body)["Message"]
    assert "disk I/O" not in body.decode()


def _signed_get(url_path_and_query: str) -> CapturedRequest:
    """A GET as a client signs it when it writes the query itself (botocore signs the query as
    sent, escapes included)."""
    request = AWSRequest(method="GET", url="http://openprofiles.test" + url_path_and_query)
    credentials = Credentials(ACCESS_KEY, SECRET_KEY)
    SigV4Auth(credentials, "profile", "us-east-1").add_auth(request)
    path, _, query = url_path_and_query.partition("?")
    headers = {name: str(value) for name, value in request.headers.items()}
    return CapturedRequest("GET", path, query, {**headers, "host": "openprofiles.test"}, b"")


def test_a_signed_query_that_is_not_utf8_is_a_bad_request_not_a_bad_signature(app: App) -> None:
    for query in ("next-token=%FF", "max-results=5&next-token=ab%C3%28", "%FE%FF=1"):
        response = app.serve(_signed_get(f"/domains?{query}"))
        error = _parse_error(response)
        assert (error["status"], error["Code"]) == (400, "BadRequestException")
        assert error["Message"] == "The query string is not valid UTF-8."
    assert app.calls == []
    # The raw bytes are what is signed: another byte than the one signed still fails it.
    tampered = _signed_get("/domains?next-token=%FF")
    tampered.raw_query = "next-token=%FE"
    error = _parse_error(app.serve(tampered))
    assert (error["status"], error["Code"]) == (403, "InvalidSignatureException")


def test_a_query_number_in_another_form_than_the_protocols_is_a_bad_request(app: App) -> None:
    """int() read max-results=1_0 as 10 (and " 1", "+1", a full-width "１" as 1): such a value
    is now refused as not a number, naming the member, and nothing runs."""
    for value in ("1_0", "%201", "%2B1", "%EF%BC%91"):
        error = _parse_error(app.serve(_signed_get(f"/domains?max-results={value}")))
        assert (error["status"], error["Code"]) == (400, "BadRequestException"), value
        assert "MaxResults" in error["Message"], error["Message"]
    assert app.calls == []
