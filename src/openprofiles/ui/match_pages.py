"""Administrator pages that explain matches, and merge them: a domain's rule-based matches and
ML match groups, and for one match the rule level and attributes that matched (rule-based, spec
§5.1), or each linking pair's attributes with their Splink comparison levels and weights and the
group's confidence score (ML-based, spec §5.2).

The explanation comes from openprofiles.identity.explain, the same functions the CLI's
`matches explain` and `matches explain-ml` print. Like the CLI, a rule-based match's values are
opened only when the administrator asks for them (`?values=1`, the CLI's --show-values); an ML
explanation never holds values.

From a match's page an administrator merges its profiles: they choose the profile kept (the
main profile; by default the one an automatic merge keeps, `default_main`), review what the
merge will do on a confirmation page, and send it. The confirmation shows the merge as the merge
itself computes it: `identity.service.merge_profiles` is run and rolled back (`_rehearse`), so
the page tells which fields, keys and objects come from which profile, and a merge the service
would refuse (a merged profile over the size limit) is refused there already; names only, values
when asked for (`?values=1`). The merge itself is that same function, MergeProfiles' own, in one
transaction with a check that the match still holds the profiles confirmed (`_merge`): a merge
log entry that can be undone from the merge's page, where the page then leads. Like every POST
of the pages it is CSRF-checked and audited (ui.web.UI.page).

A merge takes at most `MAX_MERGED_PROFILES` (20, MergeProfiles' limit) profiles into the kept
one: of a larger match, the first 20 others in the match's order (`_taken`), and the
confirmation says how many stay for the next merge, which the match's page then offers. Not
several merges in one go: each merge is one entry of the merge log, undone as a whole from the
page the merge leads to, so one confirmed merge is one entry, whose undo restores all it took.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.context import Tx
from openprofiles.errors import BadRequest, NotFound
from openprofiles.identity import explain, matching, ml_jobs
from openprofiles.identity import service as identity
from openprofiles.identity.models import MergeRecord
from openprofiles.identity.service import MAX_MERGED_PROFILES
from openprofiles.profiles import service as profiles
from openprofiles.profiles.models import ProfileRecord
from openprofiles.ui import flash
from openprofiles.ui.admin_pages import all_domain_names
from openprofiles.ui.merge_pages import MERGED, merge_url
from openprofiles.ui.web import UI, show_profiles

PAGE = 50
RULE = "rule"
ML = "ml"
KINDS = (RULE, ML)

STALE = (
    "The match has changed since this page was shown: {what}. Nothing was merged. Go back to "
    "the match, review it again and merge from there."
)
# A page reached again after its merge (the browser's Back, a resubmitted form): the match is
# gone because its profiles are one now, which "the match has changed" does not say.
ALREADY_MERGED = Markup(
    "{merged} {verb} already merged into {main}. Nothing was merged this time: see "
    '<a href="{url}">the merge</a> in the merge log, where it can be undone.'
)


def stale_message(what: str) -> str:
    """STALE about `what`, which may be a service's whole sentence ("Match x does not exist in
    domain care."): its closing full stop is STALE's own."""
    return STALE.format(what=what.strip().rstrip("."))


def _already_merged(tx: Tx, domain: str, main: str, others: Sequence[str]) -> Markup | None:
    """ALREADY_MERGED when the latest standing merge into `main` took `others` (when known;
    any, otherwise) and they still resolve to it; None when that is not why the match is
    gone."""
    for record in identity.list_merges(tx, domain_name=domain, profile_id=main, limit=20):
        if record.undone_at is not None:
            continue
        taken = set(record.merged_profile_ids)
        if others and not set(others) <= taken:
            continue
        ids = list(others) or sorted(taken)
        live = profiles.get_profiles(tx, domain_name=domain, profile_ids=[main, *ids])
        if main not in live or any(pid not in live or live[pid].profile_id != main for pid in ids):
            return None
        return ALREADY_MERGED.format(
            merged=", ".join(ids) if len(ids) > 1 else f"Profile {ids[0]}",
            verb="were" if len(ids) > 1 else "was",
            main=main,
            url=merge_url(domain, record.merge_id),
        )
    return None


class _Stale(Exception):
    """The match no longer holds the profiles the administrator confirmed."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _Preview(Exception):
    """What the merge would do, carried out of its rolled-back rehearsal (`_rehearse`): the
    merge's record, the merged profile's fields as (path, value, the profile it comes from),
    in path order, and how many of the match's other profiles the merge leaves for the next
    (`_taken`)."""

    def __init__(
        self, record: MergeRecord, fields: list[tuple[str, Any, str]], left_out: int
    ) -> None:
        super().__init__(record.merge_id)
        self.record = record
        self.fields = fields
        self.left_out = left_out


def _taken(members: Sequence[str], main: str) -> list[str]:
    """The profiles a merge from the pages takes into `main`: the match's others, in its
    order, at most MAX_MERGED_PROFILES of them (the module's docstring)."""
    return [pid for pid in members if pid != main][:MAX_MERGED_PROFILES]


def live_members(tx: Tx, *, domain_name: str, kind: str, match_id: str) -> tuple[str, ...]:
    """The profiles of a match that are still live, in the match's order. A rule-based match
    holds only live profiles (computed when read); an ML group is the latest job's, so a profile
    merged or deleted since is left out here. NotFound when the match does not exist."""
    if kind == RULE:
        return matching.get_match(tx, domain_name=domain_name, match_id=match_id).profile_ids
    group = ml_jobs.get_group(tx, domain_name=domain_name, match_id=match_id)
    records = profiles.get_profiles(tx, domain_name=domain_name, profile_ids=group.profile_ids)
    return tuple(
        pid for pid in group.profile_ids if pid in records and records[pid].profile_id == pid
    )


def default_main(records: Sequence[ProfileRecord]) -> str:
    """The profile an automatic merge keeps of a group (a rule pass's, matching._complete; ML
    auto-merging's, ml_jobs.auto_merge): the one updated last, of two the greater id. Chosen
    as they choose it, so that a merge from the pages keeps what an automatic one would."""
    return max(records, key=lambda r: (r.updated_at, r.profile_id)).profile_id


def _merge_choice(tx: Tx, domain_name: str, members: Sequence[str]) -> dict[str, Any]:
    """What a match page's merge form offers: the live members and the default main profile."""
    if len(members) < 2:
        return {"members": list(members), "default": None}
    records = profiles.get_profiles(tx, domain_name=domain_name, profile_ids=members)
    return {
        "members": list(members),
        "default": default_main([records[pid] for pid in members]),
    }


def _shown_fields(merged: ProfileRecord, taken: dict[str, str]) -> list[tuple[str, Any, str]]:
    """The merged profile's fields, a structured one (Address, Attributes) by its parts, each
    with the profile it comes from (`taken`: MergeRecord.fields_taken; the main profile when it
    does not name one)."""
    main = merged.profile_id
    out: list[tuple[str, Any, str]] = []
    for name, value in sorted(merged.fields.items()):
        # GenderString and PartyTypeString are taken with Gender and PartyType, and named so.
        source = taken.get(name) or taken.get(name.removesuffix("String")) or main
        if isinstance(value, dict):
            for part, inner in sorted(value.items()):
                path = f"{name}.{part}"
                out.append((path, inner, taken.get(path, source)))
        else:
            out.append((name, value, source))
    return out


def routes(ui: UI) -> list[Route]:
    @ui.page("admin")
    async def match_list(request: Request) -> Response:
        query = request.query_params
        chosen = query.get("domain") or ""

        def load(tx: Tx) -> dict[str, Any]:
            names = all_domain_names(tx)
            domain = chosen or (names[0] if names else "")
            overview = (
                explain.match_overview(
                    tx,
                    domain_name=domain,
                    limit=PAGE,
                    rule_after=query.get("rule_after") or None,
                    ml_after=query.get("ml_after") or None,
                )
                if domain
                else None
            )
            return {"names": names, "domain": domain, "overview": overview}

        return ui.render(request, "admin/matches.html", **(await ui.read(load)))

    @ui.page("admin", shows_personal_data=True)
    async def rule_match(request: Request) -> Response:
        domain = request.path_params["domain"]
        match_id = request.path_params["match_id"]
        with_values = request.query_params.get("values") == "1"

        def load(tx: Tx) -> dict[str, Any]:
            explained = explain.explain_rule_match(
                tx, domain_name=domain, match_id=match_id, with_values=with_values
            )
            return {
                "explained": explained,
                "merge": _merge_choice(tx, domain, explained.match.profile_ids),
            }

        loaded = await ui.read(load)
        show_profiles(request, loaded["explained"].match.profile_ids)
        return ui.render(request, "admin/match_rule.html", domain=domain, kind=RULE, **loaded)

    @ui.page("admin")
    async def ml_match(request: Request) -> Response:
        domain = request.path_params["domain"]
        match_id = request.path_params["match_id"]

        def load(tx: Tx) -> dict[str, Any]:
            explained = explain.explain_ml_match(tx, domain_name=domain, match_id=match_id)
            members = live_members(tx, domain_name=domain, kind=ML, match_id=match_id)
            return {"explained": explained, "merge": _merge_choice(tx, domain, members)}

        return ui.render(
            request, "admin/match_ml.html", domain=domain, kind=ML, **(await ui.read(load))
        )

    def merge_page(
        request: Request, *, status: int = 200, error: str = "", **context: Any
    ) -> Response:
        params = request.path_params
        return ui.render(
            request,
            "admin/match_merge.html",
            status=status,
            domain=params["domain"],
            kind=params["kind"],
            match_id=params["match_id"],
            match_url=(
                f"/admin/matches/{_part(params['domain'])}/{params['kind']}/"
                f"{_part(params['match_id'])}"
            ),
            with_values=request.query_params.get("values") == "1",
            error=error,
            **context,
        )

    async def stale_page(
        request: Request, domain: str, main: str, others: list[str], exc: Exception
    ) -> Response:
        """The 409 of a match changed since its page was shown: that its profiles were
        already merged into `main` when they were (ALREADY_MERGED), STALE otherwise."""

        def load(tx: Tx) -> Markup | None:
            try:
                return _already_merged(tx, domain, main, others)
            except NotFound:
                return None

        merged = await ui.read(load) if main else None
        what = exc.what if isinstance(exc, _Stale) else getattr(exc, "message", str(exc))
        return merge_page(request, status=409, error=merged or stale_message(what))

    async def _rehearse(domain: str, kind: str, match_id: str, main: str) -> _Preview:
        """What merging the match's live profiles into `main` does, computed by the merge
        itself in a transaction that is then rolled back: nothing of it is kept (nor anything
        it left for after the commit)."""

        def rehearse(tx: Tx) -> None:
            members = live_members(tx, domain_name=domain, kind=kind, match_id=match_id)
            if main not in members:
                raise _Stale(f"the profile {main} is not one of its profiles any more")
            if len(members) < 2:
                raise _Stale("fewer than two of its profiles exist now")
            taken = _taken(members, main)
            record = identity.merge_profiles(
                tx, domain_name=domain, main_profile_id=main, profile_ids=taken
            )
            merged = profiles.get_profile(tx, domain_name=domain, profile_id=main)
            left_out = len(members) - 1 - len(taken)
            raise _Preview(record, _shown_fields(merged, record.fields_taken), left_out)

        try:
            await ui.write(rehearse)
        except _Preview as preview:
            return preview
        raise AssertionError("the rehearsal always ends with its preview")  # pragma: no cover

    @ui.page("admin", shows_personal_data=True)
    async def merge_confirm(request: Request) -> Response:
        params = request.path_params
        domain, kind, match_id = params["domain"], params["kind"], params["match_id"]
        if kind not in KINDS:
            raise NotFound(f"There is no kind of match {kind}.")
        main = request.query_params.get("main") or ""
        if not main:
            return merge_page(request, status=400, error="Choose the profile to keep.")
        try:
            preview = await _rehearse(domain, kind, match_id, main)
        except (_Stale, NotFound) as exc:
            return await stale_page(request, domain, main, [], exc)
        except BadRequest as exc:
            # ProfileTooLarge among them: the merge cannot be made as it is.
            return merge_page(
                request,
                status=400,
                error=f"These profiles cannot be merged: {exc.message} Nothing was merged.",
            )
        record = preview.record
        show_profiles(request, [record.main_profile_id, *record.merged_profile_ids])
        return merge_page(
            request,
            preview=record,
            fields=preview.fields,
            main=main,
            left_out=preview.left_out,
            most=MAX_MERGED_PROFILES,
        )

    @ui.page("admin")
    async def merge_post(request: Request) -> Response:
        params = request.path_params
        domain, kind, match_id = params["domain"], params["kind"], params["match_id"]
        if kind not in KINDS:
            raise NotFound(f"There is no kind of match {kind}.")
        form = request.state.form
        main = form.get("main")
        merged_ids = [v for v in form.getlist("profile_id") if isinstance(v, str) and v]
        if not isinstance(main, str) or not main or not merged_ids:
            return merge_page(
                request, status=400, error="Choose the profile to keep, then review the merge."
            )

        def merge(tx: Tx) -> str:
            members = live_members(tx, domain_name=domain, kind=kind, match_id=match_id)
            confirmed = {main, *merged_ids}
            if gone := sorted(confirmed - set(members)):
                raise _Stale(
                    f"{', '.join(gone)} {'is' if len(gone) == 1 else 'are'} no longer "
                    "among its profiles (merged, deleted, or no longer matching)"
                )
            # What the confirmation showed is what the merge takes now: of a match of more
            # than MAX_MERGED_PROFILES others, the first ones (`_taken`); the rest, not
            # confirmed, stay for the next merge.
            taken = _taken(members, main)
            if joined := sorted(set(taken) - confirmed):
                raise _Stale(f"{', '.join(joined)} joined it")
            if beyond := sorted(set(merged_ids) - set(taken)):
                raise _Stale(
                    f"{', '.join(beyond)} {'is' if len(beyond) == 1 else 'are'} no longer "
                    f"among the {MAX_MERGED_PROFILES} profiles a merge takes first"
                )
            return identity.merge_profiles(
                tx, domain_name=domain, main_profile_id=main, profile_ids=merged_ids
            ).merge_id

        try:
            merge_id = await ui.write(merge)
        except (_Stale, NotFound) as exc:
            return await stale_page(request, domain, main, merged_ids, exc)
        except BadRequest as exc:
            return merge_page(
                request,
                status=400,
                error=f"These profiles cannot be merged: {exc.message} Nothing was merged.",
            )
        page = merge_url(domain, merge_id)
        response = RedirectResponse(page, status_code=303)
        flash.confirm(ui, request, response, page=page, done=[MERGED])
        return response

    return [
        Route("/admin/matches", match_list, methods=["GET"]),
        Route("/admin/matches/{domain}/rule/{match_id}", rule_match, methods=["GET"]),
        Route("/admin/matches/{domain}/ml/{match_id}", ml_match, methods=["GET"]),
        Route("/admin/matches/{domain}/{kind}/{match_id}/merge", merge_confirm, methods=["GET"]),
        Route("/admin/matches/{domain}/{kind}/{match_id}/merge", merge_post, methods=["POST"]),
    ]


def _part(value: str) -> str:
    """`value` as one part of a page's address (the templates' `urlpart` filter)."""
    return quote(value, safe="")
