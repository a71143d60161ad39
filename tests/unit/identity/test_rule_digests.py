"""The digests a rule level gives a profile: stored digests depend on their exact input, so the
compiled plan must keep computing what the first release did (key name and JSON of the values)."""

from __future__ import annotations

import json

from openprofiles.crypto.domain_keys import DomainCipher
from openprofiles.identity.matching import rule_config
from openprofiles.identity.rule_digests import DigestPlan

CIPHER = DomainCipher(b"k" * 32, "d1")


def rules(levels: list[list[str]], model: str = "ONE_TO_ONE", **selector: list[str]):
    config = rule_config(
        {
            "RuleBasedMatching": {
                "Enabled": True,
                "MatchingRules": [{"Rule": level} for level in levels],
                "AttributeTypesSelector": {"AttributeMatchingModel": model, **selector},
            }
        }
    )
    assert config is not None
    return config


def expected(level: int, tag: str, values: list[str]) -> tuple[int, bytes]:
    key_name = f"_match:L{level}:{tag}"
    return level, CIPHER.digest(key_name, json.dumps(values, ensure_ascii=False))


def test_values_are_digested_as_their_json_list_whatever_they_contain():
    plan = DigestPlan(rules([["LastName", "Attributes.code"]]))
    fields = {"LastName": '  O"Brien\\  Ünal ', "Attributes": {"code": "Tab\there ✓"}}
    assert plan.digests(CIPHER.digest, fields, "US") == {
        expected(1, "", ['o"brien\\ ünal', "tab\there ✓"])
    }


def test_one_to_one_digests_each_sub_type_and_many_to_many_each_distinct_value():
    fields = {
        "PhoneNumber": "(206) 555-0100",
        "MobilePhoneNumber": "+1 206 555 0100",
        "HomePhoneNumber": "206-555-0199",
        "Address": {"PostalCode": "98101", "City": "Seattle"},
    }
    levels = [["PhoneNumber", "Address.PostalCode"], ["FirstName"]]
    phones = ["PhoneNumber", "MobilePhoneNumber", "HomePhoneNumber"]
    one = DigestPlan(rules(levels, PhoneNumber=phones))
    assert one.digests(CIPHER.digest, fields, "US") == {
        expected(1, "PhoneNumber,Address", ["+12065550100", "98101"]),
        expected(1, "MobilePhoneNumber,Address", ["+12065550100", "98101"]),
        expected(1, "HomePhoneNumber,Address", ["+12065550199", "98101"]),
    }
    many = DigestPlan(rules(levels, "MANY_TO_MANY", PhoneNumber=phones))
    assert many.digests(CIPHER.digest, fields, "US") == {
        expected(1, "*", ["+12065550100", "98101"]),
        expected(1, "*", ["+12065550199", "98101"]),
    }


def test_birth_dates_compare_as_calendar_dates_however_written():
    plan = DigestPlan(rules([["LastName", "BirthDate"]]))

    def digests(birth_date: str, region: str = "US") -> set[tuple[int, bytes]]:
        return plan.digests(CIPHER.digest, {"LastName": "Doe", "BirthDate": birth_date}, region)

    assert digests("2001-03-02") == digests(" 03/02/2001") == digests("2001/3/2")
    assert digests("02/03/2001", "GB") == digests("2001-03-02")
    assert digests("02/03/2001") != digests("2001-03-02")  # February 3rd in the US
    # Text that is no date is compared as written, case aside.
    assert digests("Unknown") == digests("unknown") != digests("2001-03-02")
