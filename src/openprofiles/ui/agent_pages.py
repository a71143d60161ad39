"""The agent workspace: choose a domain, search profiles, read a profile (with its contact
history and other objects), create and edit profiles,
and the screen-pop address that opens the profile linked to a live contact."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.context import Tx
from openprofiles.domains import service as domains
from openprofiles.errors import NotFound
from openprofiles.profiles import service as profiles
from openprofiles.profiles.models import ADDRESS_FIELDS, KeyMatch, ProfileRecord
from openprofiles.ui import history
from openprofiles.ui import profile_form as pf
from openprofiles.ui.web import UI

SEARCH_PAGE = 20
CONTACT_KEY = "_ctrContactId"
MAX_SEARCH_TEXT = 255
KEY_VALUES_SHOWN = 5


def profile_url(domain_name: str, profile_id: str) -> str:
    return f"/agent/domains/{quote(domain_name, safe='')}/profiles/{profile_id}"


def display_name(record: ProfileRecord) -> str:
    fields = record.fields
    name = " ".join(fields[n] for n in ("FirstName", "MiddleName", "LastName") if fields.get(n))
    return name or fields.get("BusinessName") or "(no name)"


def routes(ui: UI) -> list[Route]:
    region = ui.services.settings.default_phone_region

    async def domain_names() -> list[str]:
        records, _ = await ui.read(lambda tx: domains.list_domains(tx, after=None, limit=1000))
        return [r.name for r in records]

    async def require_domain(name: str) -> None:
        await ui.read(lambda tx: domains.get_domain(tx, domain_name=name))

    @ui.page("agent")
    async def agent_home(request: Request) -> Response:
        names = await domain_names()
        if len(names) == 1:
            return RedirectResponse(f"/agent/domains/{quote(names[0], safe='')}", 303)
        return ui.render(request, "agent/home.html", domains=names)

    @ui.page("agent")
    async def search(request: Request) -> Response:
        name = request.path_params["domain"]
        await require_domain(name)
        params = request.query_params
        text = (params.get("q") or "").strip()
        key = (params.get("key") or "auto").strip()
        custom_key = (params.get("custom_key") or "").strip()
        after = params.get("after") or None
        error = ""
        results: list[tuple[ProfileRecord, list[KeyMatch]]] = []
        cursor: str | None = None
        used_key = ""
        searched = bool(text)
        if searched:
            if len(text) > MAX_SEARCH_TEXT:
                error = f"Search for at most {MAX_SEARCH_TEXT} characters."
                keys: list[str] = []
            elif key == "custom":
                keys = [custom_key] if custom_key else []
                if not custom_key:
                    error = "Enter the name of the key to search, e.g. _ctrContactId."
            elif key == "auto":
                keys = pf.search_keys_for(text)
            else:
                keys = [key]
            for key_name in keys:
                value = text.lower() if key_name == "_profileId" else text

                def run(tx: Tx, key_name: str = key_name, value: str = value) -> Any:
                    return profiles.search_profiles(
                        tx,
                        domain_name=name,
                        criteria=[profiles.SearchCriterion(key_name, (value,))],
                        limit=SEARCH_PAGE,
                        after=after,
                    )

                results, cursor = await ui.read(run)
                used_key = key_name
                if results:
                    break
        next_url = ""
        if cursor:
            next_url = "?" + urlencode(
                {"q": text, "key": key, "custom_key": custom_key, "after": cursor}
            )
        return ui.render(
            request,
            "agent/search.html",
            domain_name=name,
            q=text,
            key=key,
            custom_key=custom_key,
            keys=pf.PREDEFINED_SEARCH_KEYS,
            searched=searched,
            error=error,
            used_key=used_key,
            results=[(rec, matches, display_name(rec)) for rec, matches in results],
            next_url=next_url,
            paged=after is not None,
        )

    @ui.page("agent")
    async def profile_page(request: Request) -> Response:
        name = request.path_params["domain"]
        profile_id = request.path_params["profile_id"]
        after = request.query_params.get("after") or None
        object_type = request.query_params.get("type") or None

        def load(tx: Tx) -> dict[str, Any]:
            record = profiles.get_profile(tx, domain_name=name, profile_id=profile_id)
            return {
                "record": record,
                "keys": profiles.profile_keys(tx, domain_name=name, profile_id=record.profile_id),
                "objects": history.load(
                    tx,
                    domain_name=name,
                    profile_id=record.profile_id,
                    object_type=object_type,
                    after=after,
                ),
            }

        loaded = await ui.read(load)
        record = loaded["record"]
        if record.profile_id != profile_id:
            # A merged-away id: show the surviving profile under its own address.
            return RedirectResponse(profile_url(name, record.profile_id), status_code=303)
        fields = record.fields
        return ui.render(
            request,
            "agent/profile.html",
            domain_name=name,
            record=record,
            name=display_name(record),
            sections=pf.SECTIONS,
            addresses=[(a, fields[a]) for a in ADDRESS_FIELDS if fields.get(a)],
            attributes=sorted((fields.get("Attributes") or {}).items()),
            # A profile linked to many contacts has a _ctrContactId value per contact: show a few.
            keys=[
                (k, sorted(vs)[:KEY_VALUES_SHOWN], max(0, len(vs) - KEY_VALUES_SHOWN))
                for k, vs in sorted(loaded["keys"].items())
            ],
            objects=loaded["objects"],
            saved=request.query_params.get("saved") == "1",
            paged=after is not None,
        )

    @ui.page("agent")
    async def object_page(request: Request) -> Response:
        name = request.path_params["domain"]
        profile_id = request.path_params["profile_id"]
        object_type = request.path_params["object_type"]
        unique_key = request.path_params["unique_key"]

        def load(tx: Tx) -> tuple[ProfileRecord, str | None]:
            record = profiles.get_profile(tx, domain_name=name, profile_id=profile_id)
            text = history.load_one(
                tx,
                domain_name=name,
                profile_id=record.profile_id,
                object_type=object_type,
                unique_key=unique_key,
            )
            return record, text

        record, text = await ui.read(load)
        if text is None:
            raise NotFound(
                f"The profile has no {object_type} record {unique_key}; it may have expired."
            )
        return ui.render(
            request,
            "agent/object.html",
            domain_name=name,
            record=record,
            name=display_name(record),
            object_type=object_type,
            text=text,
        )

    def render_form(
        request: Request,
        *,
        domain_name: str,
        values: dict[str, str],
        errors: dict[str, str],
        record: ProfileRecord | None = None,
        shown: dict[str, str] | None = None,
    ) -> Response:
        return ui.render(
            request,
            "agent/profile_form.html",
            status=400 if errors else 200,
            domain_name=domain_name,
            values=values,
            shown=shown or {},
            shown_prefix=pf.SHOWN_PREFIX,
            errors=errors,
            record=record,
            name=display_name(record) if record else "",
            sections=pf.SECTIONS,
            address_parts=pf.ADDRESS_FORM_PARTS,
        )

    @ui.page("agent")
    async def create_profile(request: Request) -> Response:
        name = request.path_params["domain"]
        await require_domain(name)
        if request.method == "GET":
            values = pf.values_from_profile({})
            # Coming from a search with no result: start with what was searched for.
            prefill = request.query_params.get("q", "").strip()
            keys = pf.search_keys_for(prefill) if prefill else []
            if keys and keys[0] == "_phone":
                values["PhoneNumber"] = prefill
            elif keys and keys[0] == "_email":
                values["EmailAddress"] = prefill
            return render_form(request, domain_name=name, values=values, errors={})
        values = pf.values_from_form(request.state.form) or pf.values_from_profile({})
        errors = pf.validate(values, region)
        if not errors and not pf.creation_fields(values):
            errors["FirstName"] = "Fill in at least one field (for example the name)."
        if errors:
            return render_form(request, domain_name=name, values=values, errors=errors)
        fields = pf.creation_fields(values)
        record = await ui.write(
            lambda tx: profiles.create_profile(tx, domain_name=name, fields=fields)
        )
        return RedirectResponse(profile_url(name, record.profile_id) + "?saved=1", 303)

    @ui.page("agent")
    async def edit_profile(request: Request) -> Response:
        name = request.path_params["domain"]
        profile_id = request.path_params["profile_id"]
        record = await ui.read(
            lambda tx: profiles.get_profile(tx, domain_name=name, profile_id=profile_id)
        )
        if request.method == "GET":
            values = pf.values_from_profile(record.fields)
            return render_form(
                request, domain_name=name, values=values, errors={}, record=record, shown=values
            )
        form = request.state.form
        values = pf.values_from_form(form) or pf.values_from_profile({})
        # A form without the values it showed (sent by a script): compared with the profile.
        shown = pf.values_from_form(form, pf.SHOWN_PREFIX) or pf.values_from_profile(record.fields)
        errors = pf.validate(values, region, only=pf.changed_fields(shown, values))
        changes, conflicts = pf.update_changes(record.fields, shown, values)
        errors = {**conflicts, **errors}
        if errors:
            return render_form(
                request, domain_name=name, values=values, errors=errors, record=record, shown=shown
            )
        if changes:
            await ui.write(
                lambda tx: profiles.update_profile(
                    tx, domain_name=name, profile_id=record.profile_id, changes=changes
                )
            )
        return RedirectResponse(profile_url(name, record.profile_id) + "?saved=1", 303)

    @ui.page("agent")
    async def contact_pop(request: Request) -> Response:
        contact_id = request.path_params["contact_id"]
        wanted = request.query_params.get("domain")
        names = [wanted] if wanted else await domain_names()

        def find(tx: Tx) -> list[tuple[str, ProfileRecord]]:
            found: list[tuple[str, ProfileRecord]] = []
            for domain_name in names:
                try:
                    page, _ = profiles.search_profiles(
                        tx,
                        domain_name=domain_name,
                        criteria=[profiles.SearchCriterion(CONTACT_KEY, (contact_id,))],
                        limit=5,
                    )
                except NotFound:
                    continue
                found.extend((domain_name, rec) for rec, _ in page)
            return found

        found = await ui.read(find) if len(contact_id) <= MAX_SEARCH_TEXT else []
        if len(found) == 1:
            domain_name, record = found[0]
            return RedirectResponse(profile_url(domain_name, record.profile_id), 303)
        return ui.render(
            request,
            "agent/contact.html",
            contact_id=contact_id,
            matches=[(d, rec, display_name(rec)) for d, rec in found],
            domains=names,
            keys=pf.PREDEFINED_SEARCH_KEYS,
        )

    return [
        Route("/agent/", agent_home, methods=["GET"]),
        Route("/agent/contacts/{contact_id}", contact_pop, methods=["GET"]),
        Route("/agent/domains/{domain}", search, methods=["GET"]),
        Route("/agent/domains/{domain}/profiles/new", create_profile, methods=["GET", "POST"]),
        Route(
            "/agent/domains/{domain}/profiles/{profile_id}/edit",
            edit_profile,
            methods=["GET", "POST"],
        ),
        Route("/agent/domains/{domain}/profiles/{profile_id}", profile_page, methods=["GET"]),
        Route(
            "/agent/domains/{domain}/profiles/{profile_id}/objects/{object_type}/{unique_key}",
            object_page,
            methods=["GET"],
        ),
    ]
