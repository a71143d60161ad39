"""The message of a profile over the size limit names only operations the API has, and the
ones that return the profile as it is measured (profiles.size.profile_size)."""

from __future__ import annotations

import re

import botocore.session

from openprofiles.profiles.size import MAX_PROFILE_BYTES, ProfileTooLarge


def test_the_size_message_names_operations_of_the_api() -> None:
    model = botocore.session.get_session().get_service_model("customer-profiles")
    operations = set(model.operation_names)
    message = ProfileTooLarge(MAX_PROFILE_BYTES + 1).caller_message
    # Names such as ProfileId are the profile's members, not operations.
    members = set(model.shape_for("Profile").members)
    named = set(re.findall(r"\b(?:[A-Z][a-z]+){2,}\b", message)) - members
    assert named and named <= operations, named - operations
    assert "as SearchProfiles and BatchGetProfile return it" in message
