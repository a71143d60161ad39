"""Administrator pages of the dead-letter queue: each domain's rejected records with their reason,
one record in full, retrying one or all of them, and purging (after a confirmation step).

"Purge all" purges what its confirmation counted, not what is there when it is confirmed: the
page carries the count and the greatest message id counted, sealed (seal_count), and the POST
purges the letters up to that id (dlq.purge_through). A record dead-lettered meanwhile stays,
as with `openprofiles dlq purge --all`, and the result says so, in the CLI's words: how many
were kept, and how many of those counted were gone already (cli_support.gone_meanwhile).

Everything goes through openprofiles.dlq.service; records are opened with the domain's key only
to be shown on these pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.cli_support import gone_meanwhile
from openprofiles.context import Tx
from openprofiles.dlq import service as dlq
from openprofiles.dlq.models import DeadLetter
from openprofiles.domains import service as domains
from openprofiles.errors import BadRequest
from openprofiles.ui import flash
from openprofiles.ui.admin_pages import all_domain_names
from openprofiles.ui.web import UI, form_text
from openprofiles.users.models import WebSession

PAGE = 100
CONFIRM_MISSING = "Tick the box to confirm: purged records cannot be brought back."
# The scope of the count a "Purge all" confirmation carries (seal_count).
PURGE_SCOPE = "ui/dlq-purge-all"
# Said over a fresh confirmation (purge_question), so that the admin can confirm again there.
COUNT_REFUSED = (
    "Nothing was purged: the confirmation you sent does not say which records it counted. It "
    "was opened before the server was upgraded, is more than a day old, is from another page "
    "or session, or was changed. The confirmation below counts the records again: check it "
    "and confirm again."
)


@dataclass(frozen=True)
class Row:
    letter: DeadLetter
    # What happened when the record was forwarded to the domain's SQS queue.
    sqs_status: str


def pretty(object_json: str) -> str:
    """The record as submitted, indented when it is JSON (shown as it came otherwise)."""
    try:
        return json.dumps(json.loads(object_json), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return object_json


def dlq_url(domain_name: str, *parts: str, **query: Any) -> str:
    url = f"/admin/domains/{quote(domain_name, safe='')}/dlq"
    for part in parts:
        url += "/" + quote(part, safe="")
    given = {k: v for k, v in query.items() if v not in (None, "")}
    return url + ("?" + urlencode(given) if given else "")


def routes(ui: UI) -> list[Route]:
    @ui.page("admin")
    async def overview(request: Request) -> Response:
        def load(tx: Tx) -> list[dict[str, Any]]:
            names = all_domain_names(tx)
            return [{"name": n, "count": dlq.count(tx, domain_name=n)} for n in names]

        return ui.render(request, "admin/dlq_overview.html", rows=await ui.read(load))

    # Shows the records' reasons, which quote their values (errors.shown_value).
    @ui.page("admin", shows_personal_data=True)
    async def message_list(request: Request) -> Response:
        name = request.path_params["name"]
        after = request.query_params.get("after") or None

        def load(tx: Tx) -> dict[str, Any]:
            record = domains.get_domain(tx, domain_name=name)
            letters = dlq.list_messages(tx, domain_name=name, limit=PAGE + 1, after=after)
            rows = [Row(x, dlq.delivery_status(x)) for x in letters[:PAGE]]
            return {
                "record": record,
                "rows": rows,
                "total": dlq.count(tx, domain_name=name),
                "next_after": letters[PAGE - 1].message_id if len(letters) > PAGE else None,
            }

        # What a retry or a purge did, after it only, once (ui.flash): never from a link,
        # which could show any count.
        page = dlq_url(name)
        done = flash.take(ui, request, page=page)
        counts = flash.take_details(ui, request, page=page) if flash.DEAD_LETTERS in done else {}
        shown = ui.render(
            request,
            "admin/dlq.html",
            domain=name,
            retried=_count(counts, "retried"),
            failed=_count(counts, "failed"),
            superseded=_count(counts, "superseded"),
            purged=_count(counts, "purged"),
            **purge_news(counts),
            **(await ui.read(load)),
        )
        if done:
            flash.clear(ui, request, shown)
        return shown

    def to_list(request: Request, name: str, **counts: int | None) -> Response:
        """The domain's dead-letter queue, told what was just done (`counts`, as the page
        shows them: None is not said)."""
        page = dlq_url(name)
        response = RedirectResponse(page, status_code=303)
        given = {k: v for k, v in counts.items() if v is not None}
        flash.confirm(ui, request, response, page=page, done=[flash.DEAD_LETTERS], details=given)
        return response

    async def render_message(
        request: Request, name: str, message_id: str, *, status: int = 200, **extra: Any
    ) -> Response:
        def load(tx: Tx) -> dict[str, Any]:
            domains.get_domain(tx, domain_name=name)  # an unknown domain is its own error
            letter = dlq.get(tx, domain_name=name, message_id=message_id)
            return {
                "letter": letter,
                "sqs_status": dlq.delivery_status(letter),
                "pretty": pretty(letter.object_json),
            }

        return ui.render(
            request,
            "admin/dlq_message.html",
            status=status,
            domain=name,
            **(await ui.read(load)),
            **extra,
        )

    @ui.page("admin", shows_personal_data=True)
    async def message_detail(request: Request) -> Response:
        name = request.path_params["name"]
        message_id = request.path_params["message_id"]
        page = dlq_url(name, message_id)
        done = flash.take(ui, request, page=page)
        shown = await render_message(
            request, name, message_id, still_failing=flash.RETRY_FAILED in done
        )
        if done:
            flash.clear(ui, request, shown)
        return shown

    @ui.page("admin")
    async def retry_one(request: Request) -> Response:
        name = request.path_params["name"]
        message_id = request.path_params["message_id"]
        outcome = await ui.write(
            lambda tx: dlq.retry(tx, domain_name=name, message_ids=[message_id])
        )
        if outcome.superseded:
            return to_list(request, name, retried=0, failed=0, superseded=1)
        if outcome.succeeded:
            return to_list(request, name, retried=1, failed=0)
        page = dlq_url(name, message_id)
        response = RedirectResponse(page, status_code=303)
        flash.confirm(ui, request, response, page=page, done=[flash.RETRY_FAILED])
        return response

    @ui.page("admin")
    async def retry_all(request: Request) -> Response:
        name = request.path_params["name"]
        # An unknown domain is its own error (404), as for the other actions: retrying its
        # (no) letters used to answer as if done.
        await ui.read(lambda tx: domains.get_domain(tx, domain_name=name))
        # A batch per transaction, off the event loop: the API's writes go in between.
        outcome = await run_in_threadpool(dlq.retry_in_batches, ui.services, domain_name=name)
        superseded = len(outcome.superseded)
        return to_list(
            request,
            name,
            retried=len(outcome.succeeded) - superseded,
            failed=len(outcome.failed),
            superseded=superseded or None,
        )

    @ui.page("admin", shows_personal_data=True)
    async def purge_one(request: Request) -> Response:
        name = request.path_params["name"]
        message_id = request.path_params["message_id"]
        if request.method == "GET" or form_text(request.state.form, "confirm") != "yes":
            # The confirmation step: the record is shown once more with the box to tick.
            error = CONFIRM_MISSING if request.method == "POST" else ""
            return await render_message(
                request,
                name,
                message_id,
                status=400 if error else 200,
                confirm_purge=True,
                error=error,
            )
        # 0 when it was gone already (another admin purged or retried it): say so, not "1".
        purged = await ui.write(
            lambda tx: dlq.purge(tx, domain_name=name, message_ids=[message_id])
        )
        return to_list(request, name, purged=purged)

    async def purge_question(
        request: Request,
        name: str,
        *,
        status: int = 200,
        error: str = "",
        changed: bool = False,
        refused: str = "",
    ) -> Response:
        """The confirmation step of "Purge all": the letters counted now, and that count sealed
        in the form (`seal_count`), so that the POST purges those only. `refused`: why the
        confirmation posted could not be used (COUNT_REFUSED)."""

        def load(tx: Tx) -> tuple[int, str | None]:
            domains.get_domain(tx, domain_name=name)  # an unknown domain is its own error
            return dlq.letter_bound(tx, domain_name=name)

        total, through = await ui.read(load)
        return ui.render(
            request,
            "admin/dlq_purge.html",
            status=status,
            domain=name,
            total=total,
            counted=seal_count(ui, request, name, total, through),
            changed=changed,
            refused=refused,
            error=error,
        )

    @ui.page("admin")
    async def purge_all(request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "GET" or form_text(request.state.form, "confirm") != "yes":
            error = CONFIRM_MISSING if request.method == "POST" else ""
            return await purge_question(request, name, status=400 if error else 200, error=error)
        # What the admin saw counted, not what is there now: a record dead-lettered since is
        # not purged unseen (the admin confirmed N, N + k were deleted).
        try:
            total, through = open_count(ui, request, name, form_text(request.state.form, "counted"))
        except BadRequest as exc:
            # A confirmation from before an upgrade (no count: the form had none), stale or
            # changed: asked again, over a fresh count, rather than a dead end.
            return await purge_question(request, name, status=400, refused=exc.message)

        def work(tx: Tx) -> tuple[int, int] | None:
            purged = dlq.purge_through(tx, domain_name=name, through=through, counted=total)
            # Every counted letter still here was purged above: those left came after the
            # count, and were kept (as `openprofiles dlq purge --all` counts them).
            return None if purged is None else (purged, dlq.count(tx, domain_name=name))

        done = await ui.write(work)
        if done is None:
            # More letters among those counted than were counted: nothing purged, asked again.
            return await purge_question(request, name, status=409, changed=True)
        # Fewer than counted when some were retried or purged meanwhile: the page says how many.
        purged, kept = done
        return to_list(request, name, purged=purged, counted=total, kept=kept)

    return [
        Route("/admin/dlq", overview, methods=["GET"]),
        Route("/admin/domains/{name}/dlq", message_list, methods=["GET"]),
        Route("/admin/domains/{name}/dlq/retry", retry_all, methods=["POST"]),
        Route("/admin/domains/{name}/dlq/purge", purge_all, methods=["GET", "POST"]),
        Route("/admin/domains/{name}/dlq/{message_id}", message_detail, methods=["GET"]),
        Route("/admin/domains/{name}/dlq/{message_id}/retry", retry_one, methods=["POST"]),
        Route("/admin/domains/{name}/dlq/{message_id}/purge", purge_one, methods=["GET", "POST"]),
    ]


def _purge_scope(request: Request, domain_name: str) -> str:
    """The scope of a "Purge all" count: the domain (a count of one domain purges no other's)
    and the session (as ui.flash's are), which no name has a NUL to run into."""
    session: WebSession = request.state.session
    return "\x00".join((PURGE_SCOPE, session.csrf_token, domain_name))


def seal_count(ui: UI, request: Request, domain_name: str, total: int, through: str | None) -> str:
    """What the "Purge all" confirmation counted (dlq.letter_bound), sealed for its form: the
    admin could otherwise change it to purge what was not counted, or post a value that is not
    a count at all."""
    return ui.services.tokens.encode(_purge_scope(request, domain_name), {"n": total, "m": through})


def open_count(ui: UI, request: Request, domain_name: str, sealed: str) -> tuple[int, str | None]:
    """The count `seal_count` sealed; BadRequest (COUNT_REFUSED: purge_all asks again, 400) when
    the value was changed, is missing (a form from before the count was sealed), is another
    domain's or session's, or is older than the codec takes."""
    try:
        state = ui.services.tokens.decode(_purge_scope(request, domain_name), sealed)
    except BadRequest:
        raise BadRequest(COUNT_REFUSED) from None
    # Sealed by this server (the tag checked), in this scope by seal_count only.
    return int(state["n"]), state["m"]


def purge_news(counts: dict[str, str | int]) -> dict[str, Any]:
    """What the dead-letter queue's page says after "Purge all" besides "Purged N" (`counts`, as
    purge_all left them): `gone`, the sentence on letters counted that were gone already
    (cli_support.gone_meanwhile; None when none was), and `kept`, how many came after the count
    and stayed (None when not said: after another action)."""
    counted, purged = _count(counts, "counted"), _count(counts, "purged")
    gone = None
    if counted is not None and purged is not None:
        gone = gone_meanwhile(counted, purged, dlq.GONE_BEFORE_PURGE)
    return {"gone": gone, "kept": _count(counts, "kept")}


def _count(counts: dict[str, str | int], name: str) -> int | None:
    value = counts.get(name)
    return value if isinstance(value, int) else None
