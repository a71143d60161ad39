"""Records of the identity package: merges as the merge log keeps them, and what an undo did."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class MovedKey:
    """A key value that moved from a merged profile to the main profile."""

    from_profile_id: str
    key_name: str
    value: str


@dataclass(frozen=True)
class MovedObject:
    """A profile object that moved from a merged profile to the main profile."""

    from_profile_id: str
    object_type_name: str
    unique_key: str


@dataclass(frozen=True)
class KeptKey:
    """A key value indexed on the main profile after the merge (one it lacked before); an
    undo leaves it there."""

    key_name: str
    value: str


@dataclass(frozen=True)
class KeptObject:
    """A profile object that arrived on the main profile after the merge; an undo leaves it."""

    object_type_name: str
    unique_key: str


@dataclass(frozen=True)
class DroppedField:
    """A field path of a profile's before-image that an undo did not put back: the object type
    that wrote it was deleted since the merge (DeleteProfileObjectType scrubbed it)."""

    profile_id: str
    path: str
    object_type_name: str


@dataclass(frozen=True)
class UndoResult:
    merge_id: str
    main_profile_id: str
    restored_profile_ids: tuple[str, ...]
    objects_moved_back: int
    keys_moved_back: int
    # Data that arrived after the merge and so stays on the main profile.
    kept_objects: tuple[KeptObject, ...] = ()
    kept_keys: tuple[KeptKey, ...] = ()
    # Main-profile field paths ("LastName", "Address.City", "Attributes.Tier") the merge
    # changed and that were written after it: their later value is kept, not reverted; and
    # those a later merge still standing gives the same value (identity.service
    # `_replay_later_merges`).
    kept_fields: tuple[str, ...] = ()
    # Objects that moved in the merge but no longer exist (deleted or expired since).
    missing_objects: tuple[KeptObject, ...] = ()
    # Main-profile field paths put back to their value from before the merge, or to the value
    # a later merge still standing gives them without this one.
    reverted_fields: tuple[str, ...] = ()
    # Whether the main profile was written after the merge: a write that set a reverted path
    # to the very value the merge gave it, by the same setter, cannot be told from no write.
    main_written_since: bool = False
    # Keys that moved in the merge but were no longer on the main profile (deleted since): not
    # put back. Values DeleteProfileKey or DeleteProfileObjectType erased are not among them:
    # those leave the merge log (identity.service `forget_deleted_keys`, `forget_deleted_type`).
    missing_keys: tuple[KeptKey, ...] = ()
    # Before-image fields not put back: their object type was deleted since the merge.
    dropped_fields: tuple[DroppedField, ...] = ()


@dataclass
class MergeRecord:
    merge_id: str
    domain_name: str
    main_profile_id: str
    merged_profile_ids: tuple[str, ...]
    created_at: datetime
    undone_at: datetime | None = None
    # Filled by `get_merge` (opened from the sealed log), empty in listings.
    field_sources: dict[str, str] = field(default_factory=dict)
    # Which merged profile each field of the result came from, by dotted path (those the main
    # profile kept are not named), FieldSourceProfileIds' included.
    fields_taken: dict[str, str] = field(default_factory=dict)
    moved_keys: tuple[MovedKey, ...] = ()
    moved_objects: tuple[MovedObject, ...] = ()
    undo: UndoResult | None = None
