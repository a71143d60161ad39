"""A Target that takes a whole structure (an address, an order's items) fed by a Handlebars
Source: refused by PutProfileObjectType, as a template gives text and no record could fill it.

A whole address fed by a Source path stays valid (AWS's own solution maps `_source.Address` to
`_profile.Address`): test_objtypes_validation.test_whole_address_target_and_epoch_milli_format.
"""

from __future__ import annotations

import pytest
from tests.unit.object_types.conftest import profile_mapping

from openprofiles.errors import BadRequest
from openprofiles.object_types.validation import validate_definition
from openprofiles.profiles.models import ADDRESS_PARTS

TEMPLATE = "{{_source.street}} {{_source.city}}"


def order_mapping():
    """A valid mapping that may write to `_order` (rule 5: a key carries ORDER)."""
    definition = profile_mapping()
    definition["Keys"]["orderId"] = [{"StandardIdentifiers": ["ORDER"], "FieldNames": ["id"]}]
    return definition


@pytest.mark.parametrize(
    "target",
    [
        "_profile.Address",
        "_profile.ShippingAddress",
        "_profile.MailingAddress",
        "_profile.BillingAddress",
    ],
)
def test_a_template_into_a_whole_profile_address_is_refused_and_the_parts_listed(target):
    definition = profile_mapping()
    definition["Fields"]["homeAddress"] = {"Source": TEMPLATE, "Target": target}
    with pytest.raises(BadRequest) as exc:
        validate_definition(definition, existing_keys={})
    message = exc.value.message
    assert exc.value.code == "BadRequestException"
    assert message.startswith(f"Field homeAddress targets {target}, a whole structure")
    assert f"Target a part instead, as in {target}.City" in message
    assert f"(the parts: {', '.join(ADDRESS_PARTS)})" in message
    # The template itself is the user's mapping, not personal data, but nothing needs it.
    assert TEMPLATE not in message


def test_a_template_into_a_whole_order_address_lists_the_order_address_parts():
    definition = order_mapping()
    definition["Fields"]["bill"] = {"Source": TEMPLATE, "Target": "_order.BillingAddress"}
    with pytest.raises(BadRequest) as exc:
        validate_definition(definition, existing_keys={})
    assert "Target a part instead, as in _order.BillingAddress.City" in exc.value.message
    assert f"(the parts: Name, {', '.join(ADDRESS_PARTS)})" in exc.value.message


def test_a_template_into_order_items_is_refused():
    definition = order_mapping()
    definition["Fields"]["items"] = {
        "Source": "{{#each _source.items}}{{id}}{{/each}}",
        "Target": "_order.OrderItems",
    }
    with pytest.raises(BadRequest) as exc:
        validate_definition(definition, existing_keys={})
    assert exc.value.message.startswith(
        "Field items targets _order.OrderItems, which takes a JSON array of objects, but its "
        "Source is a Handlebars template"
    )
