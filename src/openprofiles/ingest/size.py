"""The profile size limit on ingestion's batched path (profiles.size).

A run of records (ingest.pipeline `_Run`) changes profiles in memory and writes them at its
end, so a record that would take its profile over the limit must be refused when it applies,
before it changes anything, and not when the run writes (which would fail every record of the
run). The check is kept cheap: per profile, an upper bound of its size is kept as records apply
(its sealed blob's length when read, plus what each record can add: `growth_bound`), and the
profile is measured only when that bound reaches the limit; only then is it copied, so that a
record found to take it over can be taken back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from openprofiles.ingest.mapping import MappedObject
from openprofiles.profiles.models import ProfileRecord
from openprofiles.profiles.size import (
    MAX_PROFILE_BYTES,
    ProfileTooLarge,
    growth_bound,
    profile_size,
    size_bound,
)


def record_growth(mapped: MappedObject) -> int:
    """An upper bound of what the record's `_profile` values can add to a profile's size."""
    return growth_bound(mapped.targets.get("_profile", {}))


class SizeBounds:
    """Upper bounds of the sizes of the profiles one run writes, by profile id."""

    def __init__(self) -> None:
        self._bounds: dict[str, int] = {}

    def created(self, record: ProfileRecord, mapped: MappedObject) -> None:
        """Take on a profile the run creates from one record (pipeline `_inferred_profile`:
        the email and phone it infers, then its `_profile` values); ProfileTooLarge if the
        profile is over the limit."""
        inferred = {"EmailAddress": mapped.inferred_email, "PhoneNumber": mapped.inferred_phone}
        bound = size_bound(record, 0) + growth_bound(inferred) + record_growth(mapped)
        if bound > MAX_PROFILE_BYTES:
            bound = profile_size(record)
            if bound > MAX_PROFILE_BYTES:
                raise ProfileTooLarge(bound)
        self._bounds[record.profile_id] = bound

    def apply(self, record: ProfileRecord, growth: int, write: Callable[[], bool]) -> bool:
        """Run `write`, which changes `record` in place by at most `growth` and says whether it
        changed it; ProfileTooLarge, with the record as it was, if that takes it over the limit
        (grows it, over the limit)."""
        before = self._bound(record)
        if before + growth <= MAX_PROFILE_BYTES:
            changed = write()
            self._bounds[record.profile_id] = before + growth if changed else before
            return changed
        kept = copy.deepcopy((record.fields, record.manual_fields, record.field_sources))
        was = profile_size(record)
        changed = write()
        size = profile_size(record)
        # A profile stored over the limit (before there was one) takes what does not grow it.
        if size > MAX_PROFILE_BYTES and size > was:
            record.fields, record.manual_fields, record.field_sources = kept
            raise ProfileTooLarge(size)
        self._bounds[record.profile_id] = size
        return changed

    def _bound(self, record: ProfileRecord) -> int:
        bound = self._bounds.get(record.profile_id)
        if bound is not None:
            return bound
        if record.sealed_size is not None:
            return size_bound(record, record.sealed_size)
        return profile_size(record)
