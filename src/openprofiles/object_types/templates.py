"""The built-in object type templates (spec §2), kept as JSON files in `templates/`.

Templates are account-independent and read-only. The files are read on first use, not at
import. No public source has AWS's real template JSON (spec §7.1): these are reconstructions
from the documented keys and field mappings (spec §2.2, §2.3). Choices made where the
documentation is silent:

* CTR, CTR-NoInferred, CTR-AutoAssociateOnly take `CustomerEndpoint.Address` as the phone number
  only when `CustomerEndpoint.Type` is TELEPHONE_NUMBER, and as the email address only when it
  is EMAIL_ADDRESS, through the `ifEquals` block helper (see ingest/handlebars.py).
* ServiceNow task/incident keys read `opened_by.value` / `caller_id.value` (the user's sys_id)
  rather than the documented `.link` (a URL that would never equal a sys_user's sys_id).
* Salesforce-Case is modelled on Zendesk-tickets: it writes `_case` and links the case to the
  contact's profile by `_salesforceContactId`, then the account's by `_salesforceAccountId`.
* Salesforce-Asset links the asset the same way (contact first, account as SECONDARY: the
  account id sits on every contact's profile, so it is the weaker identifier). Besides the
  documented fields it maps Name to `AssetName` and PurchaseDate to `PurchaseDate`, so the
  standard `_assetName` key finds Salesforce assets.
* The Multi-...-Account-Link templates (Salesforce-Multi-Contact-Account-Link,
  Salesforce-Multi-Asset-Account-Link, Marketo-Multi-Lead-Account-Link) are their siblings with
  `_salesforceAccountId` as a search-only key: many people's profiles share one account, so
  the account id is stored and searchable on each of them but never picks the profile.
* Shopify-DraftOrder follows AWS's documented table (mapping-shopify-objects-standard-order):
  draft orders write `_order` under `_shopifyOrderId` like orders; `invoice_url` is the
  StatusUrl, and without an `order_status_url` the StatusCode is DRAFT.
* Every template allows profile creation except CTR-AutoAssociateOnly, so a record that arrives
  before its customer's record creates the profile the later record then updates.
"""

from __future__ import annotations

import json
import threading
from importlib import resources

from openprofiles.errors import NotFound
from openprofiles.object_types.models import Template

_lock = threading.Lock()
_templates: dict[str, Template] | None = None


def _load() -> dict[str, Template]:
    global _templates
    with _lock:
        if _templates is None:
            loaded: dict[str, Template] = {}
            folder = resources.files("openprofiles.object_types").joinpath("templates")
            for entry in folder.iterdir():
                if not entry.name.endswith(".json"):
                    continue
                body = json.loads(entry.read_text(encoding="utf-8"))
                template_id = body.pop("TemplateId")
                loaded[template_id] = Template(
                    template_id=template_id,
                    source_name=body.pop("SourceName"),
                    source_object=body.pop("SourceObject"),
                    description=body.pop("Description"),
                    definition=body,
                )
            _templates = loaded
        return _templates


def list_templates() -> list[Template]:
    return sorted(_load().values(), key=lambda t: t.template_id)


def find_template(template_id: str) -> Template | None:
    return _load().get(template_id)


def get_template(template_id: str) -> Template:
    found = find_template(template_id)
    if found is None:
        raise NotFound(f"The template {template_id} does not exist.")
    return found
