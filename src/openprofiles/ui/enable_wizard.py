"""The "Enable customer profiles" wizard: one page to specify the domain, its dead-letter queue
and its encryption key; then the contact-centre instance step (with its contact-record template,
ui.instance_templates); then a page of what was set up.

Every field is validated before anything is stored; the domain is created through the same key
logic as the CreateDomain API (domains.setup.new_domain_key, then domains.service.create_domain).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from openprofiles.contacts.service import connect_instance
from openprofiles.contacts.sweep import send_kept_on
from openprofiles.context import Tx
from openprofiles.crypto.keyring import Keyring, LocalKey, normalise_alias
from openprofiles.domains import service as domains
from openprofiles.domains import setup
from openprofiles.domains.unreadable import record_local_key
from openprofiles.errors import BadRequest
from openprofiles.integrations import service as integrations
from openprofiles.integrations.models import is_instance_arn
from openprofiles.ui import instance_templates
from openprofiles.ui.integration_pages import move_needed
from openprofiles.ui.web import UI, form_text

DEFAULT_RETENTION_DAYS = 366
MAX_RETENTION_DAYS = 1098
DOMAIN_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

WIZARD_FIELDS = (
    "domain_choice",
    "domain_name",
    "existing_domain",
    "retention_days",
    "dlq_choice",
    "dlq_url",
    "key_choice",
    "local_key",
    "new_key_alias",
    "kms_arn",
)


@dataclass
class Plan:
    """What the submitted wizard asks for, once its fields are valid."""

    domain_name: str
    existing: bool
    retention_days: int = DEFAULT_RETENTION_DAYS
    queue: setup.QueueRef | None = None
    key_id: str | None = None
    new_key_alias: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


# The values each radio group of the page offers; the first is the page's default.
CHOICES = {
    "domain_choice": ("new", "existing"),
    "dlq_choice": ("none", "queue"),
    "key_choice": ("default", "local", "new_local", "kms"),
}


def _defaults() -> dict[str, str]:
    return {
        **{group: options[0] for group, options in CHOICES.items()},
        "retention_days": str(DEFAULT_RETENTION_DAYS),
    }


def _unknown_choices(values: dict[str, str]) -> dict[str, str]:
    """An error for each radio group whose value the page does not offer. A group left out
    (a form posted by a script) means its default, as on the page; any other value used to be
    read as the default too, so a mistyped `key_choice=KMS` set the domain up under the
    server's local key without a word."""
    errors = {}
    for group, options in CHOICES.items():
        value = values.get(group, "")
        if value and value not in options:
            errors[group] = f"Choose one of the options ({', '.join(options)}), not {value!r}."
    return errors


# A text field of the page that only one option of its radio group uses: (group, option, what
# to say when the field is filled in but another option is chosen).
CHOSEN_BY = {
    "dlq_url": (
        "dlq_choice",
        "queue",
        "You entered an SQS queue URL but chose 'No queue': choose 'Send failed records to an "
        "SQS queue' to use it, or clear the field.",
    ),
    "kms_arn": (
        "key_choice",
        "kms",
        "You entered a KMS key ARN but chose {choice}: choose 'Use an AWS KMS key' to use it, "
        "or clear the field.",
    ),
    "local_key": (
        "key_choice",
        "local",
        "You picked a local key in the list but chose {choice}: choose 'Use an existing local "
        "key' to use it, or set the list back to 'Choose a key'.",
    ),
    "new_key_alias": (
        "key_choice",
        "new_local",
        "You entered an alias for a new key but chose {choice}: choose 'Create a new local "
        "key' to create it, or clear the field.",
    ),
}
KEY_CHOICE_NAMES = {
    "default": "the server's default key",
    "local": "an existing local key",
    "new_local": "a new local key",
    "kms": "a KMS key",
}


def _unchosen_entries(values: dict[str, str]) -> dict[str, str]:
    """An error for each text field filled in while its radio group has another option chosen:
    such an entry used to be ignored without a word (a KMS key ARN typed in, the domain set up
    under the server's local key; a queue URL typed in, no queue)."""
    errors = {}
    for name, (group, option, message) in CHOSEN_BY.items():
        choice = values.get(group) or CHOICES[group][0]
        if values.get(name) and choice != option:
            errors[name] = message.format(choice=KEY_CHOICE_NAMES.get(choice, choice))
    return errors


# How the page's error summary names each field, in the order of the page (the summary's).
LABELS = {
    "domain_choice": "Domain",
    "domain_name": "Friendly name of the new domain",
    "retention_days": "Keep data for (days)",
    "existing_domain": "Existing domain",
    "dlq_choice": "Dead-letter queue",
    "dlq_url": "SQS queue URL",
    "key_choice": "Encryption key",
    "local_key": "Local key",
    "new_key_alias": "Alias of the new key",
    "kms_arn": "KMS key ARN",
}


def routes(ui: UI) -> list[Route]:
    settings = ui.services.settings
    keyring = Keyring(settings.keyring_path)

    def key_arn(key: LocalKey) -> str:
        return key.arn(settings.region, settings.account_id)

    async def render(
        request: Request, values: dict[str, str], errors: dict[str, str], policy: str = ""
    ) -> Response:
        existing, _ = await ui.read(lambda tx: domains.list_domains(tx, after=None, limit=1000))
        local_keys = [(key_arn(k), k.alias) for k in keyring.list_keys() if k.enabled]
        return ui.render(
            request,
            "enable/wizard.html",
            status=400 if errors else 200,
            values=values,
            errors=errors,
            labels=LABELS,
            policy=policy,
            domains=[d.name for d in existing],
            local_keys=local_keys,
            max_retention=MAX_RETENTION_DAYS,
        )

    def policy_for(values: dict[str, str]) -> str:
        if values.get("dlq_choice") != "queue" or not values.get("dlq_url"):
            return ""
        try:
            queue = setup.parse_queue_url(settings, values["dlq_url"])
        except BadRequest:
            return ""
        name = (
            values.get("existing_domain")
            if values.get("domain_choice") == "existing"
            else values.get("domain_name")
        )
        return setup.queue_policy_statement(settings, queue, name or "")

    def validate(values: dict[str, str], known: set[str]) -> Plan:
        """Every field's error at once: a radio group with a value the page does not offer
        gets its own error and leaves its sub-fields unchecked (which of them apply is
        unknown), while every other section is still checked, so one bad choice hides
        nothing else the user has to correct."""
        errors = _unknown_choices(values)
        domain_choice = values.get("domain_choice", "")
        if domain_choice == "existing":
            name = values.get("existing_domain", "")
            if name not in known:
                errors["existing_domain"] = "Choose one of the existing domains."
            # An existing domain keeps its queue and key: the other sections do not apply.
            return Plan(domain_name=name, existing=True, errors=errors)
        name = values.get("domain_name", "")
        plan = Plan(domain_name=name, existing=False, errors=errors)
        if "domain_choice" not in errors:
            check_new_domain(plan, values, known)
        if values.get("dlq_choice") == "queue":
            try:
                plan.queue = setup.parse_queue_url(settings, values.get("dlq_url", ""))
            except BadRequest as exc:
                errors["dlq_url"] = exc.message
        check_key(plan, values)
        if "dlq_choice" not in errors and "key_choice" not in errors:
            # Checked after the groups' own fields, so it does not hide their errors.
            errors.update(_unchosen_entries(values))
        return plan

    def check_new_domain(plan: Plan, values: dict[str, str], known: set[str]) -> None:
        name, errors = plan.domain_name, plan.errors
        if not name:
            errors["domain_name"] = "Enter a name for the new domain."
        elif not DOMAIN_NAME.match(name):
            errors["domain_name"] = (
                "Use 1 to 64 letters, digits, '_' or '-' (no spaces), e.g. amazon-connect-acme."
            )
        elif name in known:
            errors["domain_name"] = (
                f"A domain named {name} already exists: choose another name, or choose "
                "'Use an existing domain'."
            )
        try:
            plan.retention_days = int(values.get("retention_days", ""))
            if not 1 <= plan.retention_days <= MAX_RETENTION_DAYS:
                raise ValueError
        except ValueError:
            errors["retention_days"] = (
                f"Enter a whole number of days from 1 to {MAX_RETENTION_DAYS}."
            )

    def check_key(plan: Plan, values: dict[str, str]) -> None:
        errors = plan.errors
        choice = values.get("key_choice", "default")
        if choice == "local":
            key = keyring.lookup(values.get("local_key", ""))
            if key is None or not key.enabled:
                errors["local_key"] = "Choose one of the listed local keys."
            else:
                plan.key_id = key_arn(key)
        elif choice == "new_local":
            alias = values.get("new_key_alias", "")
            try:
                alias = normalise_alias(alias)
                if keyring.find_by_alias(alias) is not None:
                    raise ValueError(
                        f"A local key with the alias {alias} already exists: choose it under "
                        "'Use an existing local key', or pick another alias."
                    )
                plan.new_key_alias = alias
            except ValueError as exc:
                errors["new_key_alias"] = str(exc)
        elif choice == "kms":
            arn = values.get("kms_arn", "")
            if not arn.startswith("arn:") or len(arn) > 255:
                errors["kms_arn"] = (
                    "Enter a KMS key ARN such as "
                    "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab."
                )
            plan.key_id = arn

    @ui.page("admin")
    async def wizard(request: Request) -> Response:
        if request.method == "GET":
            return await render(request, _defaults(), {})
        form = request.state.form
        values = {name: form_text(form, name) for name in WIZARD_FIELDS}
        if form_text(form, "action") == "policy":
            errors: dict[str, str] = {}
            if values["dlq_choice"] == "queue":
                try:
                    setup.parse_queue_url(settings, values["dlq_url"])
                except BadRequest as exc:
                    errors["dlq_url"] = exc.message
            response = await render(request, values, errors, policy_for(values))
            return response
        existing, _ = await ui.read(lambda tx: domains.list_domains(tx, after=None, limit=1000))
        plan = validate(values, {d.name for d in existing})
        if plan.errors:
            return await render(request, values, plan.errors, policy_for(values))
        if plan.existing:
            return RedirectResponse(_step_url(plan.domain_name, "instance"), status_code=303)
        try:
            if plan.queue is not None:
                queue = plan.queue
                await ui.run(lambda: setup.check_queue_reachable(settings, queue))
        except BadRequest as exc:
            return await render(request, values, {"dlq_url": exc.message}, policy_for(values))
        if plan.new_key_alias is not None:
            # Only now, with every other field valid, so a refused form creates no key.
            try:
                created = keyring.create_key(plan.new_key_alias)
            except ValueError as exc:
                return await render(request, values, {"new_key_alias": str(exc)})
            plan.key_id = key_arn(created)
            # Recorded as `keys create` records it: a keyring copy from before it is then told
            # from one that lost it (domains.unreadable.record_local_key).
            await ui.run(lambda: record_local_key(ui.services.database, created))
        key_field = {"local": "local_key", "new_local": "new_key_alias", "kms": "kms_arn"}.get(
            values["key_choice"], "key_choice"
        )
        try:
            key = await ui.run(
                lambda: setup.new_domain_key(ui.services, plan.domain_name, plan.key_id)
            )
        except BadRequest as exc:
            return await render(request, values, {key_field: exc.message}, policy_for(values))
        config: dict[str, Any] = {
            "DefaultExpirationDays": plan.retention_days,
            "DefaultEncryptionKey": plan.key_id,
            "DeadLetterQueueUrl": plan.queue.url if plan.queue else None,
        }
        try:
            await ui.write(
                lambda tx: domains.create_domain(
                    tx,
                    domain_name=plan.domain_name,
                    config=config,
                    key_id=key[0],
                    wrapped_key=key[1],
                )
            )
        except BadRequest as exc:
            return await render(request, values, {"domain_name": exc.message})
        return RedirectResponse(_step_url(plan.domain_name, "instance"), status_code=303)

    @ui.page("admin")
    async def instance_step(request: Request) -> Response:
        name = request.path_params["name"]
        await ui.read(lambda tx: domains.get_domain(tx, domain_name=name))
        template_field = instance_templates.FIELD
        values = {"instance_arn": "", template_field: "", "move": ""}
        errors: dict[str, str] = {}
        if request.method == "POST":
            form = request.state.form
            values = {
                "instance_arn": form_text(form, "instance_arn"),
                template_field: form_text(form, template_field),
                "move": form_text(form, "move"),
            }
            arn = values["instance_arn"]
            template, template_error = instance_templates.chosen_template(values[template_field])
            if template_error:
                errors[template_field] = template_error
            if not is_instance_arn(arn):
                errors["instance_arn"] = (
                    "Enter the instance ARN of your contact centre, such as "
                    "arn:aws:connect:us-east-1:123456789012:instance/"
                    "1d908e11-3d5f-4cfb-b34d-1e7e0f216898."
                )
            if not errors:
                move = values["move"] == "yes"

                def associate(tx: Tx) -> dict[str, str]:
                    owner = integrations.instance_domain(tx, instance_arn=arn)
                    if owner is not None and owner != name and not move:
                        # Checked here, not left to the service, whose message names the
                        # command-line option where this page has its own box.
                        return {"move": move_needed(owner, name)}
                    if owner == name:
                        # The step again for an instance of this domain (to send on its kept
                        # records): the page cannot show its template before the ARN is
                        # posted, so the default must not quietly replace it.
                        current = integrations.find_instance_integration(tx, instance_arn=arn)
                        kept_as = current.object_type_name if current else None
                        if kept_as is not None and kept_as != template:
                            return {template_field: instance_templates.keep_it(kept_as)}
                    connect_instance(
                        tx,
                        domain_name=name,
                        instance_arn=arn,
                        move=move,
                        object_type_name=template,
                    )
                    return {}

                try:
                    errors = await ui.write(associate)
                except BadRequest as exc:
                    errors["instance_arn"] = exc.message
                if not errors:
                    # Associated, with the first chunk of the kept records: the rest now.
                    await ui.run(lambda: send_kept_on(ui.services, instance_arns=[arn]))
            if not errors:
                return RedirectResponse(_step_url(name, "done"), status_code=303)
        return ui.render(
            request,
            "enable/instance.html",
            status=400 if errors else 200,
            domain_name=name,
            values=values,
            errors=errors,
            template_options=instance_templates.OPTIONS,
        )

    @ui.page("admin")
    async def done(request: Request) -> Response:
        name = request.path_params["name"]

        def load(tx: Tx) -> dict[str, Any]:
            record = domains.get_domain(tx, domain_name=name)
            # From the store, not the address: the domain's instances as they are.
            # With the template its records are ingested as, the one choice of the step.
            instances = [
                (i.instance_arn, i.object_type_name)
                for i in integrations.list_instances(tx)
                if i.domain_name == record.name and i.instance_arn
            ]
            return {
                "record": record,
                "stats": domains.domain_stats(tx, domain_name=name),
                "instances": instances,
            }

        loaded = await ui.read(load)
        record = loaded["record"]
        policy = ""
        if record.dead_letter_queue_url:
            try:
                queue = setup.parse_queue_url(settings, record.dead_letter_queue_url)
                policy = setup.queue_policy_statement(settings, queue, name)
            except BadRequest:
                policy = ""
        return ui.render(request, "enable/done.html", policy=policy, **loaded)

    return [
        Route("/admin/enable", wizard, methods=["GET", "POST"]),
        Route("/admin/enable/{name}/instance", instance_step, methods=["GET", "POST"]),
        Route("/admin/enable/{name}/done", done, methods=["GET"]),
    ]


def _step_url(domain_name: str, step: str) -> str:
    return f"/admin/enable/{quote(domain_name, safe='')}/{step}"
