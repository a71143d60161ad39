"""ARNs of OpenProfiles resources, shaped like Customer Profiles' own:
`arn:aws:profile:{region}:{account}:domains/{name}[/{kind}/{resource}]`."""

from __future__ import annotations

from dataclasses import dataclass

from openprofiles.errors import BadRequest, NotFound
from openprofiles.settings import Settings


@dataclass(frozen=True)
class ResourceArn:
    domain_name: str
    # e.g. ("object-types", "CTR") for an object type; None for the domain itself.
    child: tuple[str, str] | None = None


def domain_arn(settings: Settings, domain_name: str) -> str:
    return f"arn:aws:profile:{settings.region}:{settings.account_id}:domains/{domain_name}"


def child_arn(settings: Settings, domain_name: str, kind: str, name: str) -> str:
    return f"{domain_arn(settings, domain_name)}/{kind}/{name}"


def require_local(settings: Settings, arn: str) -> None:
    """NotFound when `arn` (a profile ARN: `parse_resource_arn`) is of another partition,
    region or account than this server's. Its message names this server's region and account
    and the settings that choose them, so that a caller configured for another region (a
    Terraform provider, an SDK's default) sees why, and nothing about the resource."""
    local = f"arn:aws:profile:{settings.region}:{settings.account_id}:"
    if not arn.startswith(local):
        raise NotFound(
            f"The resource {arn} does not exist: this server's region is {settings.region} and "
            f"its account {settings.account_id} (OPENPROFILES_REGION, OPENPROFILES_ACCOUNT_ID), "
            f"so its resources' ARNs begin {local}"
        )


def parse_resource_arn(arn: str) -> ResourceArn:
    """Split a profile ARN into its domain and optional child; BadRequest when it isn't one."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "profile":
        raise BadRequest(
            "The resource ARN is not a Customer Profiles ARN "
            "(expected arn:aws:profile:REGION:ACCOUNT:domains/NAME[/...])."
        )
    path = parts[5].split("/", 3)
    if len(path) < 2 or path[0] != "domains" or not path[1]:
        raise BadRequest("The resource ARN does not name a domain (expected .../domains/NAME).")
    if len(path) == 2:
        return ResourceArn(domain_name=path[1])
    if len(path) == 4 and path[3]:
        return ResourceArn(domain_name=path[1], child=(path[2], path[3]))
    raise BadRequest("The resource ARN names an incomplete resource path.")
