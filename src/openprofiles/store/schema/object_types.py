"""Object-type tables: one row per object type a domain has defined, or per implicit
(template-named) type the domain has used.

An explicit type stores its definition as the API names its members (Description, Fields, Keys,
...): it is configuration, not personal data, so it is kept in clear like a domain's settings.
A row whose `definition` is NULL records that an implicit object type (spec §2.1) was used, so
it shows in ListProfileObjectTypes; its behaviour comes from the template named `template_id`.

object_types/service.py registers the table for DeleteDomain (importing domains.service here
would make a cycle: domains.service imports this package).
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, ForeignKeyConstraint, String, Table

from openprofiles.store.schema.core import metadata
from openprofiles.store.types import UtcDateTime

object_type = Table(
    "object_type",
    metadata,
    Column("domain_name", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("template_id", String(64), nullable=True),
    # NULL for a used implicit type; otherwise the definition (see module docstring).
    Column("definition", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    ForeignKeyConstraint(["domain_name"], ["domain.name"], ondelete="CASCADE"),
)
