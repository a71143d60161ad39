"""Records of the object_types package: field and key definitions, object types, templates.

`ObjectType.from_definition` reads a definition as the API spells it (Fields/Keys/...), which is
also how definitions are stored and how the built-in templates are written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openprofiles.normalize import ContentType

# Members of PutProfileObjectType that make up a definition (besides its name and Tags).
DEFINITION_MEMBERS = (
    "Description",
    "TemplateId",
    "ExpirationDays",
    "EncryptionKey",
    "AllowProfileCreation",
    "SourceLastUpdatedTimestampFormat",
    "MaxProfileObjectCount",
    "SourcePriority",
    "Fields",
    "Keys",
)


@dataclass(frozen=True)
class FieldDefinition:
    source: str
    target: str | None = None
    content_type: ContentType = ContentType.STRING


@dataclass(frozen=True)
class KeyDefinition:
    standard_identifiers: frozenset[str]
    field_names: tuple[str, ...]


@dataclass(frozen=True)
class ObjectType:
    domain_name: str
    name: str
    description: str
    template_id: str | None
    expiration_days: int | None
    encryption_key: str | None
    allow_profile_creation: bool
    source_last_updated_timestamp_format: str | None
    max_profile_object_count: int | None
    source_priority: int | None
    fields: Mapping[str, FieldDefinition]
    keys: Mapping[str, tuple[KeyDefinition, ...]]
    created_at: datetime
    updated_at: datetime
    # Served from a template without being defined (spec §2.1).
    implicit: bool = False
    # The definition as the API spells it (DEFINITION_MEMBERS), echoed by Get/PutProfileObjectType.
    definition: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_definition(
        cls,
        definition: Mapping[str, Any],
        *,
        domain_name: str,
        name: str,
        created_at: datetime,
        updated_at: datetime,
        implicit: bool = False,
    ) -> ObjectType:
        return cls(
            domain_name=domain_name,
            name=name,
            description=definition.get("Description") or "",
            template_id=definition.get("TemplateId"),
            expiration_days=definition.get("ExpirationDays"),
            encryption_key=definition.get("EncryptionKey"),
            allow_profile_creation=bool(definition.get("AllowProfileCreation", False)),
            source_last_updated_timestamp_format=definition.get("SourceLastUpdatedTimestampFormat"),
            max_profile_object_count=definition.get("MaxProfileObjectCount"),
            source_priority=definition.get("SourcePriority"),
            fields=parse_fields(definition.get("Fields") or {}),
            keys=parse_keys(definition.get("Keys") or {}),
            created_at=created_at,
            updated_at=updated_at,
            implicit=implicit,
            definition=dict(definition),
        )

    def key_content_types(self, key_name: str) -> tuple[ContentType, ...] | None:
        """The ContentTypes of the fields that make up `key_name` (first definition)."""
        definitions = self.keys.get(key_name)
        if not definitions:
            return None
        return tuple(
            self.fields[f].content_type for f in definitions[0].field_names if f in self.fields
        )


@dataclass(frozen=True)
class Template:
    """A built-in object type template (GetProfileObjectTypeTemplate's output)."""

    template_id: str
    source_name: str
    source_object: str
    definition: Mapping[str, Any]  # AllowProfileCreation, Fields, Keys, ... as the API names them
    # What an implicit type of the template says of itself: GetProfileObjectType and
    # ListProfileObjectTypes must give a Description (required in the model's output shapes),
    # which the template's own operations do not carry.
    description: str = ""


def parse_fields(raw: Mapping[str, Any]) -> dict[str, FieldDefinition]:
    return {
        name: FieldDefinition(
            source=spec.get("Source") or "",
            target=spec.get("Target") or None,
            content_type=ContentType(spec.get("ContentType") or ContentType.STRING),
        )
        for name, spec in raw.items()
    }


def parse_keys(raw: Mapping[str, Any]) -> dict[str, tuple[KeyDefinition, ...]]:
    return {
        name: tuple(
            KeyDefinition(
                standard_identifiers=frozenset(entry.get("StandardIdentifiers") or ()),
                field_names=tuple(entry.get("FieldNames") or ()),
            )
            for entry in entries
        )
        for name, entries in raw.items()
    }


def key_content_type_of(types: tuple[ContentType, ...]) -> ContentType:
    """How a key made of fields of these ContentTypes is normalised as a whole.

    A composite key (several fields joined with "_") is compared as written (STRING): search
    receives the joined value and cannot tell the parts apart, so ingestion must not normalise
    them one by one either.
    """
    return types[0] if len(types) == 1 else ContentType.STRING
