"""`openprofiles merges list|show|undo --domain NAME`: the merge log, and undoing a merge;
`openprofiles matches list|explain --domain NAME`: rule-based matches and why they matched;
`openprofiles matches run-job|explain-ml --domain NAME`: ML-based matching jobs (identity.ml_jobs);
`openprofiles matches run-due`: the jobs whose JobSchedule slot has come, in every domain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from openprofiles.cli_support import (
    Refused,
    open_services,
    settings_from_options,
    storage_options,
)
from openprofiles.identity.models import MergeRecord, UndoResult


def _run(data_dir: Path | None, database_url: str | None, work: Any, *, write: bool) -> Any:
    from openprofiles.errors import ServiceError
    from openprofiles.store.conflicts import retrying

    services = open_services(settings_from_options(data_dir, database_url))

    def attempt() -> Any:
        with services.write() if write else services.read() as tx:
            return work(tx)

    try:
        # A write that lost a race to another process (PostgreSQL) runs again, as an API
        # request does (store.conflicts): it then sees the winner's work, e.g. a merge already
        # undone.
        return retrying(attempt) if write else attempt()
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        services.database.dispose()


def merge_summary(merge: MergeRecord) -> dict[str, Any]:
    return {
        "MergeId": merge.merge_id,
        "MainProfileId": merge.main_profile_id,
        "MergedProfileIds": list(merge.merged_profile_ids),
        "CreatedAt": merge.created_at.isoformat(),
        "UndoneAt": merge.undone_at.isoformat() if merge.undone_at else None,
    }


def undo_summary(result: UndoResult) -> dict[str, Any]:
    return {
        "MergeId": result.merge_id,
        "MainProfileId": result.main_profile_id,
        "RestoredProfileIds": list(result.restored_profile_ids),
        "ObjectsMovedBack": result.objects_moved_back,
        "KeysMovedBack": result.keys_moved_back,
        "KeptObjects": [
            {"ObjectTypeName": o.object_type_name, "ProfileObjectUniqueKey": o.unique_key}
            for o in result.kept_objects
        ],
        "KeptKeys": [{"KeyName": k.key_name, "Value": k.value} for k in result.kept_keys],
        "KeptFields": list(result.kept_fields),
        "RevertedFields": list(result.reverted_fields),
        "MainWrittenSinceMerge": result.main_written_since,
        "MissingObjects": [
            {"ObjectTypeName": o.object_type_name, "ProfileObjectUniqueKey": o.unique_key}
            for o in result.missing_objects
        ],
        "MissingKeys": [{"KeyName": k.key_name, "Value": k.value} for k in result.missing_keys],
        "DroppedFields": [
            {"ProfileId": d.profile_id, "Field": d.path, "ObjectTypeName": d.object_type_name}
            for d in result.dropped_fields
        ],
    }


def _echo_undo(result: UndoResult) -> None:
    click.echo(
        f"Restored {', '.join(result.restored_profile_ids)}: "
        f"{result.objects_moved_back} objects and {result.keys_moved_back} keys moved back."
    )
    for o in result.kept_objects:
        click.echo(
            f"  arrived after the merge, stays on {result.main_profile_id}: "
            f"object {o.object_type_name}/{o.unique_key}"
        )
    for k in result.kept_keys:
        click.echo(
            f"  arrived after the merge, stays on {result.main_profile_id}: "
            f"key {k.key_name}={k.value}"
        )
    for name in result.kept_fields:
        click.echo(f"  written after the merge, kept on {result.main_profile_id}: field {name}")
    for name in result.reverted_fields:
        click.echo(f"  put back as before the merge on {result.main_profile_id}: field {name}")
    if result.reverted_fields and result.main_written_since:
        click.echo(
            f"  note: {result.main_profile_id} was written after the merge; a write that set a "
            "field above to the value the merge gave it cannot be told from no write, so it "
            "was put back too"
        )
    for o in result.missing_objects:
        click.echo(f"  deleted since the merge: object {o.object_type_name}/{o.unique_key}")
    for k in result.missing_keys:
        click.echo(f"  deleted since the merge: key {k.key_name}={k.value}")
    for d in result.dropped_fields:
        click.echo(
            f"  its object type {d.object_type_name} was deleted since the merge: "
            f"field {d.path} of {d.profile_id} not put back"
        )


domain_option = click.option("--domain", "domain_name", required=True, help="The domain.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def merges() -> None:
    """Profile merges: list them, see what came from where, undo one."""


@merges.command("list")
@storage_options
@domain_option
@json_option
def merges_list(
    data_dir: Path | None, database_url: str | None, domain_name: str, as_json: bool
) -> None:
    """List the domain's merges, newest first."""
    from openprofiles.identity.service import list_merges

    found = _run(
        data_dir, database_url, lambda tx: list_merges(tx, domain_name=domain_name), write=False
    )
    if as_json:
        click.echo(json.dumps([merge_summary(m) for m in found]))
        return
    for m in found:
        state = f"  (undone {m.undone_at:%Y-%m-%d %H:%M})" if m.undone_at else ""
        click.echo(
            f"{m.merge_id}  {m.created_at:%Y-%m-%d %H:%M}  {m.main_profile_id} <- "
            f"{', '.join(m.merged_profile_ids)}{state}"
        )
    if not found:
        click.echo(f"No merges in domain {domain_name}.")


@merges.command("show")
@storage_options
@domain_option
@json_option
@click.argument("merge_id")
def merges_show(
    data_dir: Path | None, database_url: str | None, domain_name: str, as_json: bool, merge_id: str
) -> None:
    """Show one merge: field sources, the keys and objects that moved, and its undo."""
    from openprofiles.identity.service import get_merge

    merge = _run(
        data_dir,
        database_url,
        lambda tx: get_merge(tx, domain_name=domain_name, merge_id=merge_id),
        write=False,
    )
    out = {
        **merge_summary(merge),
        "FieldSourceProfileIds": merge.field_sources,
        "FieldsTakenFrom": merge.fields_taken,
        "MovedKeys": [
            {"From": k.from_profile_id, "KeyName": k.key_name, "Value": k.value}
            for k in merge.moved_keys
        ],
        "MovedObjects": [
            {
                "From": o.from_profile_id,
                "ObjectTypeName": o.object_type_name,
                "ProfileObjectUniqueKey": o.unique_key,
            }
            for o in merge.moved_objects
        ],
        "Undo": undo_summary(merge.undo) if merge.undo else None,
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"Merge {merge.merge_id} at {merge.created_at:%Y-%m-%d %H:%M:%S}")
    click.echo(f"  into {merge.main_profile_id} from {', '.join(merge.merged_profile_ids)}")
    for name, source in merge.fields_taken.items():
        asked = " (FieldSourceProfileIds)" if name in merge.field_sources else ""
        click.echo(f"  field {name} taken from {source}{asked}")
    for k in merge.moved_keys:
        click.echo(f"  key {k.key_name}={k.value} moved from {k.from_profile_id}")
    for o in merge.moved_objects:
        click.echo(f"  object {o.object_type_name}/{o.unique_key} moved from {o.from_profile_id}")
    if merge.undo is not None:
        click.echo(f"Undone at {merge.undone_at:%Y-%m-%d %H:%M:%S}:")
        _echo_undo(merge.undo)


@merges.command("undo")
@storage_options
@domain_option
@json_option
@click.argument("merge_id")
def merges_undo(
    data_dir: Path | None, database_url: str | None, domain_name: str, as_json: bool, merge_id: str
) -> None:
    """Undo a merge: the merged profiles come back with their fields, keys and objects, except
    data that arrived on the main profile after the merge, which stays there."""
    from openprofiles.identity.service import undo_merge

    result = _run(
        data_dir,
        database_url,
        lambda tx: undo_merge(tx, domain_name=domain_name, merge_id=merge_id),
        write=True,
    )
    if as_json:
        click.echo(json.dumps(undo_summary(result)))
        return
    _echo_undo(result)


@click.group()
def matches() -> None:
    """Profiles that look like one customer: rule-based matches (the domain's
    RuleBasedMatching) with list and explain; ML-based matching jobs (the domain's Matching)
    with run-job, run-due and explain-ml."""


@matches.command("list")
@storage_options
@domain_option
@json_option
def matches_list(
    data_dir: Path | None, database_url: str | None, domain_name: str, as_json: bool
) -> None:
    """List the domain's rule-based match groups with their level and size."""
    from openprofiles.identity.explain import rule_matches

    found, _ = _run(
        data_dir,
        database_url,
        lambda tx: rule_matches(tx, domain_name=domain_name, limit=1_000_000),
        write=False,
    )
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"MatchId": m.match_id, "RuleLevel": m.level, "ProfileIds": list(m.profile_ids)}
                    for m in found
                ]
            )
        )
        return
    for m in found:
        click.echo(f"{m.match_id}  level {m.level}  {len(m.profile_ids)} profiles")
    if not found:
        click.echo(f"No rule-based matches in domain {domain_name}.")


@matches.command("explain")
@storage_options
@domain_option
@json_option
@click.option(
    "--show-values",
    is_flag=True,
    help="Also print the matched values, opened from the profiles (personal data).",
)
@click.argument("match_id")
def matches_explain(
    data_dir: Path | None,
    database_url: str | None,
    domain_name: str,
    as_json: bool,
    show_values: bool,
    match_id: str,
) -> None:
    """Explain a match: the rule level and the attributes its profiles share. Values are not
    printed unless --show-values is given (this command has the operator's full access)."""
    from openprofiles.identity.explain import explain_rule_match

    explained = _run(
        data_dir,
        database_url,
        lambda tx: explain_rule_match(
            tx, domain_name=domain_name, match_id=match_id, with_values=show_values
        ),
        write=False,
    )
    if as_json:
        click.echo(json.dumps(explained.as_json()))
        return
    match, values = explained.match, explained.values
    click.echo(
        f"Match {match.match_id}: rule level {match.level}, "
        f"{len(match.profile_ids)} profiles share {' AND '.join(match.attributes)}"
    )
    for pid in match.profile_ids:
        click.echo(f"  {pid}")
        for name, value in (values or {}).get(pid, {}).items():
            click.echo(f"    {name} = {value}")


def _job_summary(job: Any) -> dict[str, Any]:
    return {
        "JobId": job.job_id,
        "Status": job.status,
        "Message": job.message,
        "JobStartTime": job.started_at.isoformat() if job.started_at else None,
        "JobEndTime": job.ended_at.isoformat() if job.ended_at else None,
        "JobStats": {
            "NumberOfProfilesReviewed": job.profiles_reviewed,
            "NumberOfMatchesFound": job.matches_found,
            "NumberOfMergesDone": job.merges_done,
        },
    }


@matches.command("run-job")
@storage_options
@domain_option
@json_option
def matches_run_job(
    data_dir: Path | None, database_url: str | None, domain_name: str, as_json: bool
) -> None:
    """Run the domain's ML-based matching job now (as its Matching JobSchedule would) and print
    its result."""
    from openprofiles.errors import ServiceError
    from openprofiles.identity.ml_jobs import FAILED, run_matching_job

    services = open_services(settings_from_options(data_dir, database_url))
    try:
        job = run_matching_job(services, domain_name=domain_name)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    finally:
        services.database.dispose()
    if job is None:
        raise Refused(
            f"Matching was turned off for domain {domain_name} before the job started; "
            "the job was deleted and nothing ran.",
            error="MatchingTurnedOff",
        )
    if as_json:
        click.echo(json.dumps(_job_summary(job)))
    else:
        click.echo(
            f"Job {job.job_id}: {job.status}; {job.profiles_reviewed} profiles reviewed, "
            f"{job.matches_found} match groups, {job.merges_done} merges."
        )
        if job.message:
            click.echo(f"  {job.message}")
    if job.status == FAILED:
        raise SystemExit(1)


@matches.command("run-due")
@storage_options
@json_option
def matches_run_due(data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """Run the ML-based jobs of every domain whose JobSchedule slot has come and has no job yet
    (what a running server does every minute; safe beside running servers)."""
    from datetime import UTC, datetime

    from openprofiles.identity.ml_jobs import FAILED
    from openprofiles.identity.schedule import run_due_matching_jobs

    services = open_services(settings_from_options(data_dir, database_url))
    try:
        jobs = run_due_matching_jobs(services, now=datetime.now(UTC))
    finally:
        services.database.dispose()
    if as_json:
        click.echo(json.dumps([{"DomainName": j.domain_name, **_job_summary(j)} for j in jobs]))
    else:
        for job in jobs:
            click.echo(
                f"{job.domain_name}: job {job.job_id} for {job.scheduled_for:%Y-%m-%d %H:%M} UTC: "
                f"{job.status}; {job.matches_found} match groups, {job.merges_done} merges."
            )
        if not jobs:
            click.echo("No matching job is due.")
    if any(job.status == FAILED for job in jobs):
        raise SystemExit(1)


@matches.command("explain-ml")
@storage_options
@domain_option
@json_option
@click.argument("match_id")
def matches_explain_ml(
    data_dir: Path | None, database_url: str | None, domain_name: str, as_json: bool, match_id: str
) -> None:
    """Explain an ML-based match group: per linking pair of profiles, each attribute's Splink
    comparison level and match weight (no values are shown)."""
    from openprofiles.identity.explain import explain_ml_match

    explained = _run(
        data_dir,
        database_url,
        lambda tx: explain_ml_match(tx, domain_name=domain_name, match_id=match_id),
        write=False,
    )
    if as_json:
        click.echo(json.dumps(explained.as_json()))
        return
    group = explained.group
    click.echo(
        f"Match {group.match_id}: {len(group.profile_ids)} profiles, "
        f"confidence {group.confidence:.4f}"
    )
    for pair in group.explanation:
        left, right = pair["ProfileIds"]
        click.echo(
            f"  {left} ~ {right}: probability {pair['MatchProbability']:.4f}, "
            f"weight {pair['MatchWeight']:+.2f}"
        )
        for attribute in pair["Attributes"]:
            click.echo(
                f"    {attribute['Attribute']:<20} {attribute['MatchWeight']:+7.2f}  "
                f"{attribute['Level']}"
            )
