"""Epoch seconds given as a string are read only in the form the protocols write numbers.

float() also takes underscores, surrounding whitespace, a leading '+' and other scripts' digits:
"١٩٠٠_٠٠٠_٠٠٠" (Arabic-Indic digits) was stored as a start time in 2030 instead of refused as not
a timestamp. Such text now stays text, which validation refuses (400).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from openprofiles.errors import BadRequest
from openprofiles.wire.model import load_service_model
from openprofiles.wire.parse import parse_request
from openprofiles.wire.validate import validate_input

MODEL = load_service_model()
EPOCH = 1767323045  # 2026-01-02T03:04:05Z


def _start(text: str) -> object:
    body = f'{{"QueryStartDate": "{text}"}}'.encode()
    return parse_request(MODEL.operation_model("ListWorkflows"), {"DomainName": "d"}, [], {}, body)[
        "QueryStartDate"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "١٩٠٠_٠٠٠_٠٠٠",
        "1_767_323_045",
        " 1767323045",
        "1767323045 ",
        "+1767323045",
        "１７６７３２３０４５",  # fullwidth digits
        "1767323045.",
        ".5",
        "infinity",
    ],
)
def test_epoch_text_in_another_form_is_left_as_text_and_refused(text: str) -> None:
    assert _start(text) == text
    params = {"DomainName": "d", "WorkflowType": "APPFLOW_INTEGRATION", "QueryStartDate": text}
    with pytest.raises(BadRequest, match="QueryStartDate must be a timestamp"):
        validate_input(MODEL.operation_model("ListWorkflows").input_shape, params)


@pytest.mark.parametrize(
    "text",
    [
        str(EPOCH),
        f"{EPOCH}.0",
        "1.767323045e9",
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05",
        "2026-01-02T04:04:05+01:00",
    ],
)
def test_epoch_and_iso_text_are_still_timestamps(text: str) -> None:
    assert _start(text) == datetime.fromtimestamp(EPOCH, tz=UTC)
