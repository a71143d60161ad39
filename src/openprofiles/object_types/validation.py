"""The rules a PutProfileObjectType definition must satisfy (spec §1.1-1.5, rules 1-10).

Every violation is a BadRequest whose message says which rule is broken and names the offending
field or key. Rule 11 (TemplateId together with Fields/Keys) is checked by the service, which
resolves templates. Checks run in the order a person fixes a mapping: names, then fields, then
keys, then how keys relate to other object types of the domain.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from openprofiles.errors import BadRequest
from openprofiles.ingest.handlebars import TemplateError, compile_template, is_template
from openprofiles.ingest.mapping import check_timestamp_format
from openprofiles.normalize import ContentType
from openprofiles.object_types.models import parse_fields, parse_keys
from openprofiles.object_types.standard_objects import (
    FORBIDDEN_TARGETS,
    LIST_FIELDS,
    ROOT_IDENTIFIERS,
    SOURCE_LAST_UPDATED_TARGET,
    STANDARD_OBJECT_TYPES,
    WRITABLE_FIELDS,
)
from openprofiles.profiles.keys import PREDEFINED_CONTENT_TYPES

MAX_FIELDS = 250
# The model bounds neither Fields nor Keys nor a key's lists. Ingesting an object costs more
# than linearly in its type's keys: 3,000 keys made a PutProfileObject take 2.5 s, 10,000 took
# 54 s, and 50,000 never answered; 200,000 definitions of one key took 7.5 s to store and 2.4 s
# per object, and a million StandardIdentifiers made an 11 MB object type. MAX_KEYS bounds the
# keys and, in all, their definitions; MAX_FIELDS each definition's two lists. Generous: a key
# needs a field, and a definition's lists name distinct fields and identifiers.
MAX_KEYS = MAX_FIELDS
# The most mustaches (`{{...}}`) an object type's Source templates may hold in all. pybars'
# parser takes some 3 to 8 ms a mustache to compile a template (once per distinct template):
# 250 fields of 40 nested #if took 29 s, and 250 of 1,000 characters would take a minute. The
# built-in templates hold 6 at most, a hand-written mapping a few a field (250 fields of
# `{{_source.first}} {{_source.last}}` hold 500): 1,000 bound a definition's compilation to a
# few seconds, which the service spends before it takes the domain's lock (compile_templates).
MAX_TEMPLATE_TAGS = 1_000
# Used with fullmatch: with match, a final `$` also matches before a trailing newline.
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
KEY_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# A path's members are printable ASCII but a dot or a brace. A template's paths are ASCII too
# (ingest.handlebars): `_source.ñ` was taken as a path though `{{_source.ñ}}` was refused.
SOURCE_PATH = re.compile(r"^_source(\.(?:(?![.{}])[!-~])+)*$")
# JSONPath/JavaScript-style indexing (`a[0]`, `a.[0]`, `a['b']`, `a[*]`): the mapping looks
# `a[0]` up as a member named "a[0]", so such a field would silently stay empty.
BRACKET_INDEX = re.compile(r"\[\s*(?:\d+|\*|'[^']*'|\"[^\"]*\")\s*\]")
_BRACKET_TO_DOT = re.compile(r"\.?\[\s*(?:(\d+)|'([^']*)'|\"([^\"]*)\")\s*\]")
FORBIDDEN_NAMES = frozenset({"Tags", "tags"})
# Predefined key names a mapping may use (spec §1.11), plus the private keys of the built-in
# templates (`_ctrPhone`, `_ctrEmail`, `_salesforceCaseId`), which exist in every domain.
PREDEFINED_KEYS = frozenset(
    {
        "_account",
        "_profileId",
        "_assetId",
        "_caseId",
        "_orderId",
        "_fullName",
        "_phone",
        "_email",
        "_ctrContactId",
        "_marketoLeadId",
        "_salesforceAccountId",
        "_salesforceContactId",
        "_salesforceAssetId",
        "_zendeskUserId",
        "_zendeskExternalId",
        "_zendeskTicketId",
        "_serviceNowSystemId",
        "_serviceNowIncidentId",
        "_serviceNowTaskId",
        "_segmentUserId",
        "_shopifyCustomerId",
        "_shopifyOrderId",
        "_communicationRecordId",
        "_assetName",
        "_serialNumber",
        "_ctrPhone",
        "_ctrEmail",
        "_salesforceCaseId",
    }
)
# Keys that name a system id: they can only look records up (rule 10).
LOOKUP_ONLY_KEYS = frozenset({"_profileId", "_orderId", "_caseId", "_assetId"})
NOT_STORED = frozenset({"LOOKUP_ONLY", "NEW_ONLY"})

# key name -> (the ContentTypes of its fields, an object type that defines it)
ExistingKeys = Mapping[str, tuple[tuple[ContentType, ...], str]]


def _fail(message: str) -> BadRequest:
    return BadRequest(message)


def validate_object_type_name(name: str) -> None:
    if name.startswith("_") or name in STANDARD_OBJECT_TYPES:
        raise _fail(
            f"Object type names starting with '_' are reserved for standard objects; "
            f"{name} cannot be defined."
        )


def validate_definition(definition: Mapping[str, Any], *, existing_keys: ExistingKeys) -> None:
    """Raise BadRequest for the first rule `definition` (API member names) breaks."""
    raw_fields = definition.get("Fields") or {}
    raw_keys = definition.get("Keys") or {}
    if not raw_fields or not raw_keys:
        raise _fail("You must either specify both Fields and Keys, or you can specify TemplateId.")
    if len(raw_fields) > MAX_FIELDS:
        raise _fail(
            f"An object type can have at most {MAX_FIELDS} fields; this one has {len(raw_fields)}."
        )
    _check_key_sizes(raw_keys)
    _check_template_size(raw_fields)
    _check_fields(definition, raw_fields)
    _check_keys(definition, raw_fields, raw_keys, existing_keys)


def compile_templates(definition: Mapping[str, Any]) -> None:
    """Compile the definition's Source templates ahead of `validate_definition`, which then
    finds them compiled (ingest.handlebars keeps them). The service calls it before it takes
    the domain's lock, so that other puts of the domain do not wait on pybars; called before
    the write transaction, no writer at all would (SQLite has one). BadRequest for too many of
    them; an invalid one is left for `validate_definition` to report, in its order."""
    raw_fields = definition.get("Fields")
    if not isinstance(raw_fields, Mapping) or len(raw_fields) > MAX_FIELDS:
        return  # validate_definition refuses it
    _check_template_size(raw_fields)
    for source in _template_sources(raw_fields):
        with contextlib.suppress(TemplateError):
            compile_template(source)


def _template_sources(raw_fields: Mapping[str, Any]) -> list[str]:
    return [
        source
        for spec in raw_fields.values()
        if isinstance(spec, Mapping)
        and isinstance(source := spec.get("Source"), str)
        and is_template(source)
    ]


def _check_template_size(raw_fields: Mapping[str, Any]) -> None:
    tags = sum(source.count("{{") for source in _template_sources(raw_fields))
    if tags > MAX_TEMPLATE_TAGS:
        raise _fail(
            f"An object type's Source templates can hold at most {MAX_TEMPLATE_TAGS:,} "
            f"Handlebars expressions ({{{{...}}}}) in all; these hold {tags:,}."
        )


def _check_key_sizes(raw_keys: Mapping[str, Any]) -> None:
    if len(raw_keys) > MAX_KEYS:
        raise _fail(
            f"An object type can have at most {MAX_KEYS} keys; this one has {len(raw_keys)}."
        )
    definitions = sum(len(entries or ()) for entries in raw_keys.values())
    if definitions > MAX_KEYS:
        raise _fail(
            f"An object type's keys can have at most {MAX_KEYS} definitions in all; "
            f"these have {definitions}."
        )
    for name, entries in raw_keys.items():
        for entry in entries or ():
            for member in ("FieldNames", "StandardIdentifiers"):
                listed = len(entry.get(member) or ())
                if listed > MAX_FIELDS:
                    raise _fail(
                        f"Key {name} lists {listed} {member} in a definition; "
                        f"a definition can list at most {MAX_FIELDS}."
                    )


# ---------------------------------------------------------------------------- fields


def _check_fields(definition: Mapping[str, Any], raw_fields: Mapping[str, Any]) -> None:
    timestamp_format = definition.get("SourceLastUpdatedTimestampFormat")
    if timestamp_format is not None:
        try:
            check_timestamp_format(timestamp_format)
        except ValueError as exc:
            raise _fail(
                f"SourceLastUpdatedTimestampFormat {timestamp_format!r} must be EpochMilli or a "
                f"Java SimpleDateFormat pattern: {exc}."
            ) from None
    for name, spec in raw_fields.items():
        if not FIELD_NAME.fullmatch(name) or name in FORBIDDEN_NAMES:
            raise _fail(
                f"Field name {name!r} is invalid: field names start with a letter, use only "
                "letters, digits, '_', '.' and '-', and cannot be Tags."
            )
        _check_source(name, spec.get("Source") or "")
    fields = parse_fields(raw_fields)
    targeted: dict[str, str] = {}
    for name, field in fields.items():
        if field.target is None:
            continue
        _check_target(name, field.target, field.source)
        if field.target == SOURCE_LAST_UPDATED_TARGET and timestamp_format is None:
            raise _fail(
                f"Field {name} targets {SOURCE_LAST_UPDATED_TARGET}, which requires "
                "SourceLastUpdatedTimestampFormat (EpochMilli or a SimpleDateFormat pattern)."
            )
        targeted.setdefault(field.target, name)
    for enum_member, string_member in (
        ("Gender", "GenderString"),
        ("PartyType", "PartyTypeString"),
    ):
        both = (f"_profile.{enum_member}", f"_profile.{string_member}")
        if all(t in targeted for t in both):
            raise _fail(
                f"Fields {targeted[both[0]]} and {targeted[both[1]]} target both "
                f"_profile.{enum_member} and _profile.{string_member}; map only one of them."
            )


def _check_source(name: str, source: str) -> None:
    if not source:
        raise _fail(f"Field {name} has no Source.")
    if is_template(source):
        try:
            compile_template(source)
        except TemplateError as exc:
            raise _fail(f"Field {name} has an invalid Handlebars Source: {exc}.") from None
    elif (bracket := BRACKET_INDEX.search(source)) is not None:
        raise _fail(_bracket_message(name, source, bracket.group(0)))
    elif not source.isascii():
        raise _fail(
            f"Field {name} has Source {source!r}: a Source path names members in ASCII "
            "characters only, as a Handlebars template's paths do."
        )
    elif not SOURCE_PATH.fullmatch(source):
        raise _fail(
            f"Field {name} has Source {source!r}: a Source must be a path starting with "
            "_source (such as _source.Address.City) or a Handlebars template over _source."
        )


def _bracket_message(name: str, source: str, bracket: str) -> str:
    if "*" in bracket:
        how = (
            "a Source path has no wildcard; to combine the members of an array use a "
            "Handlebars template such as {{#each _source.items}}{{id}} {{/each}}"
        )
    else:
        dotted = _BRACKET_TO_DOT.sub(lambda m: "." + next(g for g in m.groups() if g), source)
        how = f"write {dotted}"
    return (
        f"Field {name} has Source {source!r}: a Source path addresses array elements and "
        f"members with dots, not brackets (as in _source.items.0.id); {how}."
    )


# Members of a standard object whose value is a structure of lists, not one value: the Profile
# shape's EngagementPreferences is {Phone: [ContactPreference], Email: [ContactPreference]}, a
# ContactPreference naming a key, its value, a profile and a contact type. A mapping field
# yields one string, so it cannot build one; CreateProfile and UpdateProfile set it. (The other
# structures of the Profile shape are the four addresses, whose parts are targets, and
# Attributes; FoundByItems is read-only, in FORBIDDEN_TARGETS.)
UNMAPPABLE_STRUCTURES: Mapping[tuple[str, str], str] = {
    ("_profile", "EngagementPreferences"): (
        "a structure of Phone and Email lists of contact preferences (set with CreateProfile "
        "or UpdateProfile)"
    ),
}


def _check_target(name: str, target: str, source: str) -> None:
    """Rule 6: every Target names a real, writable field of a standard object, which the
    Source can give a value of."""
    if target in FORBIDDEN_TARGETS:
        raise _fail(f"Field {name} targets {target}, a system identifier that cannot be mapped.")
    if target == SOURCE_LAST_UPDATED_TARGET:
        return
    if "" in target.split("."):
        # `_profile.FirstName.` would be taken as FirstName, `_profile.Attributes.Tier.` as an
        # attribute named "Tier.": an empty member is a typo, not a name.
        raise _fail(f"Field {name} has Target {target!r}: a Target has no empty member.")
    root, _, rest = target.partition(".")
    member, _, part = rest.partition(".")
    if root not in WRITABLE_FIELDS:
        if root in STANDARD_OBJECT_TYPES:
            raise _fail(
                f"Field {name} targets {target}: OpenProfiles supports targets in "
                f"{', '.join(sorted(WRITABLE_FIELDS))} only."
            )
        raise _fail(
            f"Field {name} has Target {target!r}: a Target must start with a standard object "
            f"({', '.join(sorted(WRITABLE_FIELDS))})."
        )
    members = WRITABLE_FIELDS[root]
    if member == "Attributes":
        if not part:
            raise _fail(
                f"Field {name} targets {target}: name the attribute, as in {root}.Attributes.Tier."
            )
        # Imported here: ingest.mapping imports this package's modules.
        from openprofiles.ingest.mapping import attribute_name_limit

        most = attribute_name_limit(root)
        if most is not None and len(part) > most:
            raise _fail(
                f"Field {name} targets an attribute whose name has {len(part)} characters; "
                f"attribute names have at most {most}."
            )
        return
    if f"{root}.{member}" in FORBIDDEN_TARGETS:
        raise _fail(
            f"Field {name} targets {target}: {root}.{member} is a system identifier or read-only "
            "member that cannot be mapped."
        )
    if (root, member) in UNMAPPABLE_STRUCTURES:
        raise _fail(
            f"Field {name} targets {target}, but {root}.{member} is "
            f"{UNMAPPABLE_STRUCTURES[(root, member)]}, which a mapping cannot target: a mapping "
            f"writes one value a field. It can target {root}'s string members, the parts of "
            f"its addresses (as in {root}.Address.City) and {root}.Attributes.<name>."
        )
    if member not in members:
        raise _fail(
            f"Field {name} targets {target}, but {member!r} is not a field of {root} "
            f"(custom values go to {root}.Attributes.<name>)."
        )
    parts = members[member]
    if part and (parts is None or part not in parts or (root, member) in LIST_FIELDS):
        raise _fail(f"Field {name} targets {target}, but {root}.{member} has no part {part!r}.")
    if not part and is_template(source):
        _check_whole_structure(name, target, parts, is_list=(root, member) in LIST_FIELDS)


def _check_whole_structure(
    name: str, target: str, parts: tuple[str, ...] | None, *, is_list: bool
) -> None:
    """A Handlebars Source into a Target that takes a whole structure: refused, as no record
    could fill it.

    A whole address (`_profile.Address`, `_order.BillingAddress`, ...) is a valid Target: AWS's
    own Unified Profile for Travellers maps `_source.Address` to `_profile.Address` and reads
    Address1, State, PostalCode back (spec §1.2), and ingestion copies a JSON object part by
    part. A template, though, renders text, never a JSON object or array, so every record with
    a value would go to the dead-letter queue ("takes a JSON object", ingest.mapping). AWS does
    not document this case; refusing the definition says so once, where it can be fixed."""
    if is_list:
        raise _fail(
            f"Field {name} targets {target}, which takes a JSON array of objects, but its "
            "Source is a Handlebars template, which gives text. Give a Source path to the "
            "array instead, such as _source.items."
        )
    if parts is None:
        return
    example = "City" if "City" in parts else parts[0]
    raise _fail(
        f"Field {name} targets {target}, a whole structure of parts, but its Source is a "
        "Handlebars template, which gives text, not a JSON object. Target a part instead, as in "
        f"{target}.{example} (the parts: {', '.join(parts)}), or give a Source path to a JSON "
        "object with those members."
    )


# ---------------------------------------------------------------------------- keys


def _check_keys(
    definition: Mapping[str, Any],
    raw_fields: Mapping[str, Any],
    raw_keys: Mapping[str, Any],
    existing_keys: ExistingKeys,
) -> None:
    fields = parse_fields(raw_fields)
    keys = parse_keys(raw_keys)
    for key_name, entries in keys.items():
        if not KEY_NAME.fullmatch(key_name) or key_name in FORBIDDEN_NAMES:
            raise _fail(
                f"Key name {key_name!r} is invalid: key names use only letters, digits, '_' and "
                "'-', and cannot be Tags."
            )
        if key_name.startswith("_") and key_name not in PREDEFINED_KEYS:
            raise _fail(
                f"Key {key_name}: key names starting with '_' are reserved for predefined keys "
                f"such as _email, _phone and _account; {key_name} is not one of them."
            )
        if not entries:
            raise _fail(f"Key {key_name} has no definition.")
        for entry in entries:
            if key_name in LOOKUP_ONLY_KEYS and "LOOKUP_ONLY" not in entry.standard_identifiers:
                raise _fail(f"Key {key_name} is a system identifier and must be LOOKUP_ONLY.")
            if not entry.field_names:
                raise _fail(f"Key {key_name} must reference at least one field in FieldNames.")
            for field_name in entry.field_names:
                if field_name not in fields:
                    raise _fail(
                        f"Key {key_name} references field {field_name}, which is not defined "
                        "in Fields."
                    )
            if "UNIQUE" in entry.standard_identifiers and entry.standard_identifiers & NOT_STORED:
                raise _fail(
                    f"Key {key_name}: UNIQUE cannot be combined with LOOKUP_ONLY or NEW_ONLY."
                )

    flat = [(name, entry) for name, entries in keys.items() for entry in entries]
    unique = [name for name, entry in flat if "UNIQUE" in entry.standard_identifiers]
    if len(unique) != 1:
        raise _fail(_unique_message(unique))
    profile_keys = [(n, e) for n, e in flat if "PROFILE" in e.standard_identifiers]
    if not profile_keys:
        raise _fail("At least one key must carry the PROFILE standard identifier.")
    if definition.get("AllowProfileCreation", False) and not any(
        name == "_profileId" or not (entry.standard_identifiers & NOT_STORED)
        for name, entry in profile_keys
    ):
        raise _fail(
            "When AllowProfileCreation is true, at least one PROFILE key must be neither "
            f"LOOKUP_ONLY nor NEW_ONLY; keys {', '.join(n for n, _ in profile_keys)} all are."
        )
    identifiers = {i for _, entry in flat for i in entry.standard_identifiers}
    for name, field in fields.items():
        root = (field.target or "").partition(".")[0]
        needed = ROOT_IDENTIFIERS.get(root)
        if needed and needed not in identifiers:
            raise _fail(
                f"Field {name} writes to {root}, so a key must carry the {needed} standard "
                f"identifier to find the {root} record."
            )
    _check_content_types(fields, keys, existing_keys)


def _unique_message(unique: list[str]) -> str:
    """Rule 1 broken: `unique` names the key of each definition that carries UNIQUE."""
    rule = (
        "Exactly one key must carry the UNIQUE standard identifier, in one definition (it "
        "identifies the profile object; a composite unique key lists all its fields in that "
        "definition's FieldNames)"
    )
    if not unique:
        return f"{rule}; none does."
    counts = Counter(unique)
    if len(counts) == 1:
        return f"{rule}; key {unique[0]} has {len(unique)} definitions that carry it."
    names = [f"{n} ({c} definitions)" if c > 1 else n for n, c in counts.items()]
    return f"{rule}; keys {', '.join(names[:-1])} and {names[-1]} carry it."


def _check_content_types(
    fields: Mapping[str, Any], keys: Mapping[str, Any], existing_keys: ExistingKeys
) -> None:
    """Rule 8: one key name means one kind of value across the domain."""
    for key_name, entries in keys.items():
        types = [tuple(fields[f].content_type for f in e.field_names) for e in entries]
        if any(t != types[0] for t in types):
            raise _fail(f"Key {key_name}: its definitions use fields of different ContentTypes.")
        known = existing_keys.get(key_name)
        # Predefined keys derived from the profile (_email, _phone, ...) are always normalised by
        # their fixed type, whatever their fields say (AWS's own example maps a NUMBER field to
        # _account), so a difference there changes nothing.
        if key_name in PREDEFINED_CONTENT_TYPES:
            continue
        if known is not None and known[0] != types[0]:
            raise _fail(
                f"Key {key_name} is already defined by object type {known[1]} over fields of "
                f"ContentType {', '.join(known[0])}; here its fields have ContentType "
                f"{', '.join(types[0])}. A key name must have the same ContentTypes everywhere."
            )
