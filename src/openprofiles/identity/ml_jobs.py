"""Probabilistic matching jobs (`Matching`, spec §5.2): Splink (Fellegi–Sunter) on an in-memory
DuckDB over the domain's live profiles; the jobs, their match groups, GetMatches, GetSimilarProfiles
for ML_BASED_MATCHING, and the explanation of a group.

A job reads the domain's live profiles' match features in memory — name, email, phone (E.164
through openprofiles.normalize), city, postal code and birth date, normalised when each profile
was written and stored sealed (openprofiles.identity.ml_features; a missing or stale row is
recomputed from the profile) — and scores candidate pairs.
Candidates come from blocking rules (same phone, same email, same postal code and last-name
initial, same birth date), so cost grows with the block sizes, near-linearly in the profiles,
not with all pairs. The DuckDB database lives in memory with spilling to disk turned off: nothing
in clear reaches disk, and no value is ever logged (Splink's own logging is kept at ERROR).

Model parameters: every comparison level starts from fixed m/u priors (`PRIORS`). On a domain of
at least `MIN_TRAINING_PROFILES` profiles, u is estimated by random sampling and m by expectation
maximisation over two blocking rules (same email, same birth date); a training step that cannot
run (no pair in a block, an estimate that underflows) leaves the model as it was before the
step, a level never observed keeps its prior, and estimates out of bounds are corrected
(`_bounded`). Small domains — a domain of 10 profiles — use the priors alone, which separate
formatting variants and typos of one person from distinct people on the attributes above.

Households (people sharing a phone and an address, often a surname) are what the model must
not group: the address is compared only where the phones differ, an equal phone weighs less the
more profiles share it, and EM never learns from the pairs sharing a phone (`_comparisons`,
`_train`). On the identity benchmark that took the share of wrong pairs among those found from
40 % to about 1 % (docs/performance.md).

Pairs scoring at least `MATCH_THRESHOLD` are clustered (connected components at that threshold)
into match groups {MatchId, ProfileIds, ConfidenceScore}; a group's confidence is the lowest
score among the pairs that link it (a conservative figure: MinAllowedConfidenceScoreForMerging
compares with it). A group's explanation (per linking pair, each attribute's comparison level
and weight) is stored compactly: the pairs name the job's few combinations of levels, stored
once on the job's row, and get_group expands them. A completed job replaces the previous job's
groups, which are stored in pages (openprofiles.identity.ml_groups), without the profiles
erased while it ran. Auto-merging (Matching.AutoMerging) merges, within groups at or above
MinAllowedConfidenceScoreForMerging, the profiles whose values of every attribute of a
Consolidation criterion are equal (criteria OR-ed, spec §5.2), through
identity.service.merge_profiles: logged and undoable.

A job runs on demand (`openprofiles matches run-job`) or on the domain's JobSchedule
(openprofiles.identity.schedule, which claims each slot with `claim_scheduled_job`). At most
`Settings.matching_jobs_per_week` jobs of a domain start in any 7 days (spec §0 and §5.2: "max 3
jobs/week"): a job run on demand past that is refused with BadRequest, and a scheduled one waits.

Liveness: the process running a job writes the job's `heartbeat_at` at each step and, from a
thread of its own (`Heartbeat`), every fifth of `Settings.matching_job_lease_seconds` while
Splink runs. A job whose heartbeat is older than the lease is taken for dead — its process was
killed, crashed or redeployed — and `expire_stale_jobs` (the scheduler's check) marks it FAILED,
which also frees its JobSchedule slot. Every status change of a running job is conditional on the
job being unfinished, so a process that was taken for dead but was only stalled finds out at its
next step and drops its results instead of publishing them next to the slot's new job.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from operator import itemgetter
from types import TracebackType
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from openprofiles.context import Services, Tx
from openprofiles.domains.service import find_domain, register_domain_table
from openprofiles.errors import BadRequest, NotFound
from openprofiles.gc_pause import paused_gc
from openprofiles.identity import ml_groups
from openprofiles.identity.ml_features import COLUMNS, FeatureColumns, live_features
from openprofiles.identity.ml_features import features as features  # re-exported for callers
from openprofiles.identity.ml_groups import MatchGroup as MatchGroup  # re-exported
from openprofiles.identity.ml_groups import MatchPage as MatchPage  # re-exported
from openprofiles.identity.ml_groups import Pair
from openprofiles.normalize import ContentType, normalize
from openprofiles.profiles import service as profiles
from openprofiles.profiles.models import ADDRESS_FIELDS, ADDRESS_PARTS, STRING_FIELDS
from openprofiles.store.in_lists import in_chunks
from openprofiles.store.schema import domain, identity_job, profile

logger = logging.getLogger(__name__)

MATCH_TYPE = "ML_BASED_MATCHING"
MATCH_THRESHOLD = 0.9
MIN_TRAINING_PROFILES = 1000
MAX_U_PAIRS = 1e6

PENDING = "PENDING"
PREPROCESSING = "PREPROCESSING"
FIND_MATCHING = "FIND_MATCHING"
MERGING = "MERGING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
# The statuses of a job that has not finished: its process is expected to be running it.
UNFINISHED = (PENDING, PREPROCESSING, FIND_MATCHING, MERGING)

# The window Settings.matching_jobs_per_week counts jobs in (spec §5.2: "max 3 jobs/week").
WEEK = timedelta(days=7)

register_domain_table(identity_job)

# Comparison column -> the profile attribute an explanation names.
ATTRIBUTES = {
    "first_name": "FirstName",
    "last_name": "LastName",
    "email": "EmailAddress",
    "phone": "PhoneNumber",
    "postal_code": "Address.PostalCode",
    "city": "Address.City",
    "birth_date": "BirthDate",
}


@dataclass(frozen=True)
class JobRecord:
    domain_name: str
    job_id: str
    status: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    message: str | None = None
    profiles_reviewed: int = 0
    matches_found: int = 0
    merges_done: int = 0
    auto_merging: dict[str, Any] | None = None
    # The JobSchedule slot of a scheduled job (identity.schedule); None when run on demand.
    scheduled_for: datetime | None = None
    # The last sign of life of the process running the job.
    heartbeat_at: datetime | None = None
    # Set when a check found the heartbeat older than the lease and marked the job FAILED.
    lease_expired_at: datetime | None = None


# ---------------------------------------------------------------------------- configuration


def matching_config(tx: Tx, domain_name: str) -> dict[str, Any]:
    """The domain's `Matching`; NotFound for an unknown domain, BadRequest when it is off."""
    tx.cipher(domain_name)
    record = find_domain(tx, domain_name=domain_name)
    config = (record.config if record else {}).get("Matching") or {}
    if not config.get("Enabled"):
        raise BadRequest(
            f"Matching (ML-based identity resolution) is not enabled for domain {domain_name}."
        )
    return dict(config)


# ---------------------------------------------------------------------------- the Splink model


@contextmanager
def _quiet_splink() -> Iterator[None]:
    """Splink warns about untrained levels at WARNING; its messages carry no values, but a job
    has nothing to say through them."""
    splink_logger = logging.getLogger("splink")
    level = splink_logger.level
    splink_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        splink_logger.setLevel(level)


# Priors (m, u) per comparison and level, exact first, "anything else" last (Splink's order; a
# level for a missing value has none). m: how often one person's two records land at the level;
# u: how often two different people do. The m of "anything else" is small for the attributes
# that tell relatives apart (first name, email, birth date; trained on the identity benchmark it
# came out 0.03, below 1e-6 and 0.0015): with 0.05-0.1 a small domain grouped a household whose
# members differed in first name and email.
PRIORS: dict[str, tuple[list[float], list[float]]] = {
    "first_name": ([0.75, 0.12, 0.1, 0.03], [0.005, 0.01, 0.03, 0.955]),
    "last_name": ([0.8, 0.1, 0.07, 0.03], [0.002, 0.005, 0.02, 0.973]),
    "email": ([0.85, 0.13, 0.02], [0.0001, 0.0009, 0.999]),
    "phone": ([0.85, 0.1, 0.05], [0.0005, 0.002, 0.9975]),
    "postal_code": ([0.9, 0.1], [0.01, 0.99]),
    "city": ([0.9, 0.1], [0.1, 0.9]),
    "birth_date": ([0.9, 0.08, 0.02], [0.003, 0.03, 0.967]),
}
# The least m a trained level keeps (`_bounded`): EM on clean data learns that one person's
# records never differ on a phone, city or email (m of "anything else" about 1e-7, a weight of
# -38 that no agreement outweighs), which would keep apart the records of a person who moved
# or changed number. With 0.01 a disagreement weighs at most about -6.6.
MIN_M = 0.01


def _comparisons(*, term_frequencies: bool = True) -> list[Any]:
    """The comparisons, in `COLUMNS` order, each configured with its `PRIORS`; with
    `term_frequencies`, an equal phone weighs less the more profiles have it.

    A household — people sharing a phone and an address, often a surname — is what Splink's
    independence assumption gets most wrong: two of its members agree on the phone, the postal
    code and the city, and the model added the three weights as if they were independent
    evidence (about +35), which outweighed a different first name, email and birth date; 40 %
    of the pairs the job found were two members of one household (issue 6). Agreement on the
    phone already says what the address would, for one person's records and for a household's,
    so the postal code is compared only where the phones are not equal, and the city only where
    neither the phones nor the postal codes are (a postal code says the city): the shared
    contact details count once, and the personal attributes (first name, email, birth date)
    decide between a duplicate and a relative.

    A household's members are also more profiles with one phone than one person's records: the
    term-frequency adjustment takes an equal phone's u from how many profiles have that number,
    not from all pairs (at 100,000 profiles it took the relatives among the pairs found from
    11 % to 1 %). It is left off in a domain too small to train (`MIN_TRAINING_PROFILES`), whose
    frequencies say little: in 10 profiles a phone two have is a fifth of them."""
    import splink.comparison_library as cl

    # Splink's Levenshtein comparison with the distance computed only where it can be close.
    from openprofiles.identity.ml_levenshtein import LevenshteinAtThresholds

    comparisons = [
        cl.JaroWinklerAtThresholds("first_name", [0.92, 0.8]),
        cl.JaroWinklerAtThresholds("last_name", [0.92, 0.8]),
        LevenshteinAtThresholds("email", [2]),
        LevenshteinAtThresholds("phone", [1]).configure(
            term_frequency_adjustments=term_frequencies
        ),
        _exact_unless_equal("postal_code", ["phone"], "the phone numbers are equal"),
        _exact_unless_equal(
            "city", ["phone", "postal_code"], "the phone numbers or postal codes are equal"
        ),
        LevenshteinAtThresholds("birth_date", [1]),
    ]
    return [
        comparison.configure(m_probabilities=PRIORS[column][0], u_probabilities=PRIORS[column][1])
        for comparison, column in zip(comparisons, COLUMNS, strict=True)
    ]


def _exact_unless_equal(column: str, said_by: list[str], said: str) -> Any:
    """An exact-match comparison of `column` that is not compared (weight 0, like a missing
    value) when the pair's values of any of `said_by` are equal: they already count it."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    equal = " OR ".join(f"{other}_l = {other}_r" for other in said_by)
    return cl.CustomComparison(
        [
            cll.CustomLevel(
                f"{column}_l IS NULL OR {column}_r IS NULL OR {equal}",
                f"Not compared: a value is missing, or {said}",
            ).configure(is_null_level=True),
            cll.ExactMatchLevel(column),
            cll.ElseLevel(),
        ],
        output_column_name=column,
    )


def _blocking_rules() -> list[Any]:
    from splink import block_on

    return [
        block_on("phone"),
        block_on("email"),
        block_on("postal_code", "substr(last_name, 1, 1)"),
        block_on("birth_date"),
    ]


@dataclass(frozen=True)
class Scored:
    """What a Splink run found: groups of profile ids with their linking pairs, and the
    attribute lists (one per combination of comparison levels) the pairs name by position."""

    groups: list[MatchGroup]
    trained: bool
    levels: list[list[dict[str, Any]]] = field(default_factory=list)


def score(
    table: FeatureColumns,
    *,
    threshold: float = MATCH_THRESHOLD,
    min_training_profiles: int = MIN_TRAINING_PROFILES,
    # 32 random hex digits; os.urandom directly: uuid.uuid4() costs 4 us, 0.1 s a job.
    new_id: Callable[[], str] = lambda: os.urandom(16).hex(),
) -> Scored:
    """Score and cluster the profiles of `table` with Splink on an in-memory DuckDB."""
    n = len(table)
    if n < 2:
        return Scored([], False)
    import duckdb
    import pyarrow as pa
    from splink import DuckDBAPI, Linker, SettingsCreator

    connection = duckdb.connect(":memory:")
    # No spilling to a temporary directory: the opened values must not reach disk.
    connection.execute("SET temp_directory = ''")
    try:
        with _quiet_splink():
            # A table of DuckDB's own, copied once from Arrow: Splink's queries then scan
            # DuckDB's storage, not a Python object.
            # DuckDB's unique_id is the profile's rank in profile id order, not the 32-character
            # id: every join, sort and hash of Splink's (blocking, sampling, clustering) is on
            # it, and an integer is cheaper there. Ranks keep the ids' order, so pairs
            # (l < r) and orderings are the same; the ids come back in _groups.
            ids = table.columns["unique_id"]
            profile_ids = sorted(ids)  # type: ignore[type-var]
            if profile_ids == ids:
                ranks: Any = pa.array(range(n), pa.int64())
            else:
                rank = {profile_id: i for i, profile_id in enumerate(profile_ids)}
                ranks = pa.array([rank[i] for i in ids], pa.int64())
            connection.register(
                "openprofiles_input",
                pa.table(
                    {
                        "unique_id": ranks,
                        **{c: pa.array(table.columns[c], pa.string()) for c in COLUMNS},
                    }
                ),
            )
            connection.execute("CREATE TABLE openprofiles_profiles AS FROM openprofiles_input")
            connection.unregister("openprofiles_input")
            db_api = DuckDBAPI(connection)
            settings = SettingsCreator(
                link_type="dedupe_only",
                comparisons=_comparisons(term_frequencies=n >= min_training_profiles),
                blocking_rules_to_generate_predictions=_blocking_rules(),
                # Prior: about one duplicate pair per ten profiles.
                probability_two_random_records_match=min(0.5, 0.2 / n),
                retain_matching_columns=False,
                retain_intermediate_calculation_columns=True,
            )
            linker = Linker(db_api.register("openprofiles_profiles"), settings, log_level=None)
            trained = n >= min_training_profiles and _train(linker, n)
            predictions = linker.inference.predict(threshold_match_probability=threshold)
            clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
                predictions, threshold
            )
            groups, levels = _groups(
                connection,
                predictions.physical_name,
                clusters.physical_name,
                linker,
                profile_ids,  # type: ignore[arg-type]
                new_id,
            )
    finally:
        connection.close()
    return Scored(groups, trained, levels)


def _train(linker: Any, n: int) -> bool:
    """Estimate u by random sampling and m by EM; a step that cannot run keeps the model as it
    was before the step (`_kept_on_failure`), priors included; then `_bounded`. True when a
    step ran.

    EM is blocked on the email and on the birth date, attributes of one person, never on the
    phone: the pairs sharing a phone are duplicates and household members in about equal
    parts, and EM, which has no labels, took the households for matches there — it learned
    that one person's records differ on the first name a quarter of the time and on the birth
    date nearly half of it (m of "anything else" 0.24 and 0.44 on the 10,000-profile identity
    benchmark; 0.03 and 0.001 blocked on the email), so a relative's different name and birth
    date weighed almost nothing."""
    from splink import block_on

    def estimate_u() -> None:
        # All the pairs in one query per comparison (num_chunks=1): by default Splink splits
        # them into ten chunks, stopping when every level has been seen 100 times, and the
        # rare levels (a Levenshtein level of random pairs) never are, so most comparisons
        # ran ten queries for the same pairs, each with its own planning and round trip.
        linker.training.estimate_u_using_random_sampling(
            max_pairs=min(MAX_U_PAIRS, n * (n - 1) / 2), seed=1, num_chunks=1
        )

    trained = _kept_on_failure(linker, "u estimation", estimate_u)
    em = linker.training.estimate_parameters_using_expectation_maximisation
    for column in ("email", "birth_date"):
        ran = _kept_on_failure(
            linker, f"m estimation blocked on {column}", partial(em, block_on(column))
        )
        trained = trained or ran
    if trained:
        _bounded(linker)
    return trained


def _bounded(linker: Any) -> None:
    """Keep trained m probabilities in bounds: a comparison whose closest level came out less
    likely for one person's records than for two people's (m below u: EM's "match" class
    settled on something else, such as the households sharing an attribute) gets its `PRIORS`
    m back, and no level's m stays below `MIN_M`."""
    for comparison in linker._settings_obj.comparisons:
        levels = [level for level in comparison.comparison_levels if not level.is_null_level]
        column = comparison.output_column_name
        if levels[0].m_probability < levels[0].u_probability:
            logger.info("m estimates of %s are degenerate; keeping its priors", column)
            for level, prior in zip(levels, PRIORS[column][0], strict=True):
                level.m_probability = prior
        for level in levels:
            level.m_probability = max(level.m_probability, MIN_M)


def _kept_on_failure(linker: Any, name: str, step: Callable[[], object]) -> bool:
    """Run one training step of `linker`; when it raises, put the model back as it was before
    the step and return False.

    Splink does not: an EM session takes the comparisons its blocking rule uses out of the
    linker's model (pairs that agree on them cannot estimate them) and sets a blocking-adjusted
    prior match probability there before it looks at any pair, and puts them back only when
    it completes. An EM step that raised — "resulted in no record pairs" when no two profiles
    share a birth date (usual in contact-centre data), a ValueError when an m probability
    underflows to 0.0 — left that comparison out: the predictions lacked its `mw_` column,
    which `_groups` reads, and the job failed. The whole model is restored rather than
    `_groups` tolerating a missing comparison or the rule checked for pairs beforehand: every
    comparison keeps scoring, with what the steps before estimated or its priors (a birth date
    still counts for the profiles that have one), whatever way a step fails, partway through
    included (u estimation records its estimates one comparison at a time)."""
    settings = linker._settings_obj
    before = settings.core_model_settings.copy()  # a deep copy: levels are updated in place
    sessions = len(linker._em_training_sessions)
    try:
        step()
    except Exception as exc:  # any failure to estimate keeps the model as it was
        settings.core_model_settings = before
        del linker._em_training_sessions[sessions:]
        # The exception's type only, as run_job does for a failed job.
        logger.info("%s could not run (%s); keeping the parameters", name, type(exc).__name__)
        return False
    return True


def _level_labels(linker: Any) -> dict[str, list[tuple[float, str]]]:
    """Per comparison column, (match weight, label) of each Splink level. Splink 5's predictions
    carry each comparison's match weight (`mw_<column>`) but not its level, so the level is the
    one whose weight it is (a null level weighs 0)."""
    out: dict[str, list[tuple[float, str]]] = {}
    for comparison in linker._settings_obj.comparisons:
        out[comparison.output_column_name] = [
            (0.0 if level.is_null_level else float(level._match_weight), level.label_for_charts)
            for level in comparison.comparison_levels
        ]
    return out


def _level(levels: list[tuple[float, str]], weight: float) -> str:
    closest = min(levels, key=lambda lv: abs(lv[0] - weight), default=(weight, ""))
    return closest[1]


@paused_gc()  # a tuple per linking pair, all kept (openprofiles.gc_pause)
def _groups(
    connection: Any,
    predictions: str,
    clusters: str,
    linker: Any,
    profile_ids: Sequence[str],
    new_id: Callable[[], str],
) -> tuple[list[MatchGroup], list[list[dict[str, Any]]]]:
    """The match groups of the clusters of two or more profiles, each with its linking pairs,
    and the attribute lists those pairs name.

    DuckDB joins the pairs to their clusters, numbers each cluster's profiles and orders the
    pairs; Python only shapes the rows. The attributes of a pair depend on its comparisons'
    weights alone, and pairs share a few combinations of levels, so each combination's list is
    built once and a pair names it by position: a job's explanations are stored once per
    combination, not once per pair (at 100,000 profiles 46 MB of JSON took a third of storing
    the groups). DuckDB's unique_id is a profile's position in `profile_ids` (its rank in id
    order, see score).

    An attribute's weight is its level's plus, for a comparison with a term-frequency
    adjustment (the phone), the pair's adjustment (`mw_tf_adj_<column>`): the attribute weights
    add up to the pair's. The level is the one of the level's weight alone."""
    labels = _level_labels(linker)
    adjusted = {
        comparison.output_column_name
        for comparison in linker._settings_obj.comparisons
        if comparison._has_tf_adjustments
    }
    expressions = [f"p.mw_{c}" for c in COLUMNS] + [
        f"coalesce(p.mw_tf_adj_{c}, 0.0)" if c in adjusted else "0.0" for c in COLUMNS
    ]
    weights = ", ".join(expressions)
    named = ", ".join(f"{e} AS w{i}" for i, e in enumerate(expressions))
    connection.execute(
        f"""
        CREATE TEMPORARY TABLE openprofiles_pairs AS
        WITH members AS (
            SELECT cluster_id, unique_id,
                   row_number() OVER (PARTITION BY cluster_id ORDER BY unique_id) - 1 AS position
            FROM {clusters}
        )
        SELECT l.cluster_id, least(l.position, r.position) AS a,
               greatest(l.position, r.position) AS b, p.match_probability, p.match_weight,
               dense_rank() OVER (ORDER BY {weights}) - 1 AS combination, {named}
        FROM {predictions} AS p
        JOIN members AS l ON l.unique_id = p.unique_id_l
        JOIN members AS r ON r.unique_id = p.unique_id_r
        WHERE l.cluster_id = r.cluster_id
        """
    )
    combinations = connection.execute(
        "SELECT DISTINCT ON (combination) * EXCLUDE (cluster_id, a, b, match_probability, "
        "match_weight) FROM openprofiles_pairs ORDER BY combination"
    ).fetchall()
    levels = [
        [
            {
                "Attribute": ATTRIBUTES[column],
                "Level": _level(labels.get(column, []), float(weight)),
                "MatchWeight": round(float(weight) + float(adjustment), 4),
            }
            for column, weight, adjustment in zip(
                COLUMNS, row[1 : 1 + len(COLUMNS)], row[1 + len(COLUMNS) :], strict=True
            )
        ]
        for row in combinations
    ]
    members = dict(
        connection.execute(
            f"""
            SELECT cluster_id, list(unique_id ORDER BY unique_id)
            FROM {clusters} GROUP BY cluster_id HAVING count(*) > 1
            """
        ).fetchall()
    )
    rows = connection.execute(
        "SELECT cluster_id, a, b, match_probability, match_weight, combination "
        "FROM openprofiles_pairs ORDER BY 1, 2, 3"
    ).fetchall()
    # Rows come by cluster: a group's pairs are its rows without the cluster id.
    found: list[tuple[tuple[str, ...], tuple[Pair, ...]]] = sorted(
        (tuple(map(profile_ids.__getitem__, members[cluster])), tuple(row[1:] for row in linking))
        for cluster, linking in itertools.groupby(rows, key=itemgetter(0))
        if cluster in members
    )
    groups = [
        MatchGroup(new_id(), ids, round(min(map(itemgetter(2), linking)), 6), pairs=linking)
        for ids, linking in found
    ]
    return groups, levels


# ---------------------------------------------------------------------------- jobs


def _job(row: Any) -> JobRecord:
    return JobRecord(
        domain_name=row.domain_name,
        job_id=row.job_id,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        message=row.message,
        profiles_reviewed=row.profiles_reviewed,
        matches_found=row.matches_found,
        merges_done=row.merges_done,
        auto_merging=row.auto_merging,
        scheduled_for=row.scheduled_for,
        heartbeat_at=row.heartbeat_at,
        lease_expired_at=row.lease_expired_at,
    )


Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


def clock_from(start: datetime) -> Clock:
    """A clock that reads `start` now and advances with the monotonic clock: the scheduler's
    check at `now` runs its jobs on it, so their heartbeats are on the check's time line (the
    current time in a server; the time a test chose in a test)."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


class JobStopped(Exception):
    """The job is no longer unfinished: a check took its process for dead and marked it FAILED."""


def _set(tx: Tx, domain_name: str, job_id: str, *, now: datetime, **values: Any) -> bool:
    """Record a step (and a heartbeat) of an unfinished job; False when the job has finished,
    or was marked FAILED by `expire_stale_jobs`, and so is no longer this process's to write."""
    result = tx.conn.execute(
        update(identity_job)
        .where(
            identity_job.c.domain_name == domain_name,
            identity_job.c.job_id == job_id,
            identity_job.c.status.in_(UNFINISHED),
        )
        .values(updated_at=now, heartbeat_at=now, **values)
    )
    return bool(result.rowcount)


def _step(tx: Tx, job: JobRecord, *, now: datetime, **values: Any) -> None:
    if not _set(tx, job.domain_name, job.job_id, now=now, **values):
        raise JobStopped(job.job_id)


def jobs_started_since(tx: Tx, *, domain_name: str, since: datetime) -> list[datetime]:
    """When the domain's jobs created after `since` were created, newest first."""
    c = identity_job.c
    return list(
        tx.conn.execute(
            select(c.created_at)
            .where(c.domain_name == domain_name, c.created_at > since)
            .order_by(c.created_at.desc())
        ).scalars()
    )


def _check_weekly_limit(tx: Tx, domain_name: str, now: datetime) -> None:
    """BadRequest when `Settings.matching_jobs_per_week` jobs of the domain started in the 7
    days before `now` (0: no limit).

    On PostgreSQL the domain's row is locked first (FOR NO KEY UPDATE: inserts that reference the
    domain are not held up), so two processes creating jobs at once count one after the other;
    on SQLite the one writer already does that."""
    limit = tx.settings.matching_jobs_per_week
    if limit <= 0:
        return
    tx.conn.execute(
        select(domain.c.name).where(domain.c.name == domain_name).with_for_update(key_share=True)
    )
    started = jobs_started_since(tx, domain_name=domain_name, since=now - WEEK)
    if len(started) >= limit:
        free = started[limit - 1] + WEEK
        raise BadRequest(
            f"Domain {domain_name} has started {len(started)} identity resolution jobs in the "
            f"last 7 days; at most {limit} jobs run a week. The next can start after "
            f"{free:%Y-%m-%d %H:%M:%S} UTC."
        )


def _insert_job(
    tx: Tx, domain_name: str, scheduled_for: datetime | None, now: datetime
) -> str | None:
    """Insert a PENDING job row; None when a live job already holds the slot `scheduled_for`.
    BadRequest when Matching is off or the domain has had its jobs for the week."""
    config = matching_config(tx, domain_name)
    _check_weekly_limit(tx, domain_name, now)
    job_id = uuid.uuid4().hex  # the model's JobId pattern: [a-f0-9]{32}
    insert = sqlite_insert if tx.services.database.is_sqlite else pg_insert
    inserted = tx.conn.execute(
        insert(identity_job)
        .values(
            domain_name=domain_name,
            job_id=job_id,
            status=PENDING,
            created_at=now,
            updated_at=now,
            heartbeat_at=now,
            profiles_reviewed=0,
            matches_found=0,
            merges_done=0,
            auto_merging=config.get("AutoMerging"),
            scheduled_for=scheduled_for,
        )
        # The unique (domain, slot) index of jobs whose lease has not expired makes the insert
        # the claim of a scheduled slot: of several processes inserting the same slot, one row
        # is written, atomically.
        .on_conflict_do_nothing()
        # RETURNING says whether the row was written (psycopg reports no rowcount here).
        .returning(identity_job.c.job_id)
    ).first()
    return job_id if inserted is not None else None


def delete_pending_jobs(tx: Tx, *, domain_name: str) -> int:
    """Delete the domain's PENDING jobs, as turning Matching off does (the model's
    IdentityResolutionJobStatus: "If you turn off the Identity Resolution feature in your
    domain, jobs in the PENDING state are deleted"); returns how many. A job already past
    PENDING runs to its end: its first step finds its row gone only if it was still PENDING."""
    result = tx.conn.execute(
        delete(identity_job).where(
            identity_job.c.domain_name == domain_name, identity_job.c.status == PENDING
        )
    )
    return int(result.rowcount or 0)


def create_job(tx: Tx, *, domain_name: str, now: datetime | None = None) -> JobRecord:
    """A PENDING job for the domain, run on demand (BadRequest when Matching is off, or when the
    domain has started its `Settings.matching_jobs_per_week` jobs in the last 7 days)."""
    job_id = _insert_job(tx, domain_name, None, now or tx.now)
    assert job_id is not None  # a job without a slot has nothing to conflict with
    return get_job(tx, domain_name=domain_name, job_id=job_id)


def claim_scheduled_job(
    tx: Tx, *, domain_name: str, slot: datetime, now: datetime | None = None
) -> JobRecord | None:
    """A PENDING job for the JobSchedule slot `slot`, or None when a job (of this or another
    server process) already has that slot and has not been taken for dead. BadRequest when
    Matching is off or the domain has had its jobs for the week."""
    job_id = _insert_job(tx, domain_name, slot, now or tx.now)
    return None if job_id is None else get_job(tx, domain_name=domain_name, job_id=job_id)


def run_matching_job(
    services: Services,
    *,
    domain_name: str,
    threshold: float = MATCH_THRESHOLD,
    min_training_profiles: int = MIN_TRAINING_PROFILES,
) -> JobRecord | None:
    """Create a job and run it now (`run_job`; None when Matching was turned off before it
    started)."""
    with services.write() as tx:
        job = create_job(tx, domain_name=domain_name)
    return run_job(services, job, threshold=threshold, min_training_profiles=min_training_profiles)


class Heartbeat:
    """While a job runs, writes its heartbeat every `interval` seconds from a thread of its own,
    so a long Splink run (outside any transaction) still shows its process alive. Stops when the
    `with` block ends, or when the job is no longer unfinished (`alive` turns False)."""

    def __init__(self, services: Services, job: JobRecord, clock: Clock, interval: float) -> None:
        self.services = services
        self.job = job
        self.clock = clock
        self.interval = interval
        self.alive = True
        self.beats = 0
        self._done = threading.Event()
        self._beaten = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{job.job_id}", daemon=True
        )

    def beat(self) -> bool:
        """Write one heartbeat now; False when the job has finished or was taken for dead."""
        with self.services.write() as tx:
            return _set(tx, self.job.domain_name, self.job.job_id, now=self.clock())

    def wait_for_beats(self, count: int, timeout: float) -> bool:
        """Block until the thread has written `count` heartbeats (or stopped); for observers."""
        with self._beaten:
            return self._beaten.wait_for(
                lambda: self.beats >= count or not self.alive, timeout=timeout
            )

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                alive = self.beat()
            except Exception as exc:  # a missed beat is retried at the next interval
                logger.warning(
                    "heartbeat of identity resolution job %s not written: %s",
                    self.job.job_id,
                    type(exc).__name__,
                )
                continue
            with self._beaten:
                self.beats += 1
                self.alive = alive
                self._beaten.notify_all()
            if not alive:
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()


def _deleted(services: Services, domain_name: str, job_id: str) -> bool:
    with services.read() as tx:
        return (
            tx.conn.execute(
                select(identity_job.c.job_id).where(
                    identity_job.c.domain_name == domain_name, identity_job.c.job_id == job_id
                )
            ).first()
            is None
        )


def run_job(
    services: Services,
    job: JobRecord,
    *,
    threshold: float = MATCH_THRESHOLD,
    min_training_profiles: int = MIN_TRAINING_PROFILES,
    clock: Clock = wall_clock,
    after_scoring: Callable[[], None] | None = None,
) -> JobRecord | None:
    """Run a PENDING job: PENDING → PREPROCESSING → FIND_MATCHING → (MERGING) → COMPLETED, or
    FAILED with a message naming the failing step. Each step commits its status and heartbeat,
    so a running job shows where it is; Splink runs outside any database transaction, with
    `Heartbeat` writing meanwhile. A job taken for dead while it ran (`JobStopped`) keeps the
    FAILED status the check gave it, and its results are dropped. None when the job was
    deleted before it started: Matching was turned off while it was PENDING
    (`delete_pending_jobs`).

    The job reads the profiles in one transaction and saves its groups in another, and profiles
    change in between: the save leaves out those erased meanwhile (`_existing_groups`).
    `after_scoring`, when given, is called between the two, outside any transaction: a fixed
    point for what a concurrent request does there in a real run (tests erase a profile)."""
    domain_name = job.domain_name
    job_id = job.job_id
    step = PREPROCESSING
    interval = max(services.settings.matching_job_lease_seconds / 5, 0.1)
    try:
        with Heartbeat(services, job, clock, interval):
            with services.write() as tx:
                now = clock()
                _step(tx, job, now=now, status=PREPROCESSING, started_at=now)
                table = live_features(tx, domain_name)
                _step(tx, job, now=clock(), status=FIND_MATCHING, profiles_reviewed=len(table))
            step = FIND_MATCHING
            scored = score(table, threshold=threshold, min_training_profiles=min_training_profiles)
            del table
            if after_scoring is not None:
                after_scoring()
            step = MERGING
            with services.write() as tx:
                # Still this process's job? Checked before anything is replaced or merged; the
                # row stays locked (PostgreSQL) or the writer held (SQLite) until the commit, so
                # no check can take the job for dead in between.
                _step(tx, job, now=clock())
                merges = 0
                auto = job.auto_merging or {}
                if auto.get("Enabled"):
                    _step(tx, job, now=clock(), status=MERGING)
                    # Before the groups are saved: their lock is taken after every profile row
                    # the merges lock (ml_groups' docstring).
                    merges = auto_merge(
                        tx, domain_name=domain_name, groups=scored.groups, auto=auto
                    )
                groups = _existing_groups(tx, domain_name, scored.groups)
                ml_groups.store_groups(tx, domain_name, job_id, groups)
                now = clock()
                _step(
                    tx,
                    job,
                    now=now,
                    status=COMPLETED,
                    ended_at=now,
                    matches_found=len(groups),
                    merges_done=merges,
                    explanation_levels=scored.levels,
                    message=None
                    if scored.trained
                    else "Model parameters: fixed priors (small domain).",
                )
    except JobStopped:
        if step == PREPROCESSING and _deleted(services, domain_name, job_id):
            logger.info(
                "identity resolution job %s was deleted before it started (Matching turned off)",
                job_id,
            )
            return None
        logger.warning(
            "identity resolution job %s was taken for dead while it ran; its results are dropped",
            job_id,
        )
    except Exception as exc:  # a job records its failure instead of vanishing
        # The exception's text could quote data; only its type is recorded and logged.
        logger.error(
            "identity resolution job %s failed at %s: %s", job_id, step, type(exc).__name__
        )
        with services.write() as tx:
            now = clock()
            _set(
                tx,
                domain_name,
                job_id,
                now=now,
                status=FAILED,
                ended_at=now,
                message=f"The job failed at {step} ({type(exc).__name__}).",
            )
    with services.read() as tx:
        return get_job(tx, domain_name=domain_name, job_id=job_id)


def _existing_groups(tx: Tx, domain_name: str, groups: Sequence[MatchGroup]) -> list[MatchGroup]:
    """The job's groups without the profiles erased (DeleteProfile) since the job read them, in
    the transaction that saves them: a deletion that committed before is seen here, one that
    commits after finds these groups (ml_groups.lock_groups orders the two on PostgreSQL).
    Merged-away profiles exist still, and stay, as after a merge following a job."""
    ml_groups.lock_groups(tx, domain_name)
    members = sorted({pid for group in groups for pid in group.profile_ids})
    existing: set[str] = set()
    for chunk in in_chunks(members):
        existing.update(
            tx.conn.execute(
                select(profile.c.profile_id).where(
                    profile.c.domain_name == domain_name, profile.c.profile_id.in_(chunk)
                )
            ).scalars()
        )
    return ml_groups.without_profiles(groups, set(members) - existing)


def stopped_message(heartbeat_at: datetime) -> str:
    return (
        "The process running the job stopped: no heartbeat since "
        f"{heartbeat_at:%Y-%m-%d %H:%M:%S} UTC. The job did not finish."
    )


def expire_stale_jobs(services: Services, *, now: datetime) -> list[JobRecord]:
    """Mark FAILED every unfinished job (of any domain) whose heartbeat is older at `now` than
    `Settings.matching_job_lease_seconds`: the process running it stopped. Such a job lets go of
    its JobSchedule slot. Safe beside other checks: each job is marked by one of them, and not at
    all if it beat in between. Returns the jobs this call marked."""
    c = identity_job.c
    cutoff = now - timedelta(seconds=services.settings.matching_job_lease_seconds)
    stale = c.status.in_(UNFINISHED) & (c.heartbeat_at < cutoff)
    with services.read() as tx:
        found = tx.conn.execute(select(c.domain_name, c.job_id, c.heartbeat_at).where(stale)).all()
    if not found:
        return []
    expired = []
    with services.write() as tx:
        for row in found:
            result = tx.conn.execute(
                update(identity_job)
                .where(c.domain_name == row.domain_name, c.job_id == row.job_id, stale)
                .values(
                    status=FAILED,
                    ended_at=now,
                    updated_at=now,
                    lease_expired_at=now,
                    message=stopped_message(row.heartbeat_at),
                )
            )
            if result.rowcount:
                expired.append((row.domain_name, row.job_id))
        records = [
            _job(r)
            for domain_name, job_id in expired
            for r in tx.conn.execute(
                select(identity_job).where(c.domain_name == domain_name, c.job_id == job_id)
            )
        ]
    for record in records:
        logger.warning(
            "identity resolution job %s of domain %s: its process stopped; marked FAILED",
            record.job_id,
            record.domain_name,
        )
    return records


def get_job(tx: Tx, *, domain_name: str, job_id: str) -> JobRecord:
    """GetIdentityResolutionJob: a job of the domain, whether or not Matching is on now;
    NotFound naming the job and the domain for an id the domain has no job by (and for an
    unknown domain, first).

    Unlike GetMatches and the other ML operations, it does not refuse a domain whose Matching
    is off, on purpose: the model's IdentityResolutionJobStatus doc says only that turning the
    feature off deletes PENDING jobs, so the jobs that ran outlive it, and their record (when,
    what it found and merged) is what an operator looks up after turning matching off."""
    tx.cipher(domain_name)
    row = tx.conn.execute(
        select(identity_job).where(
            identity_job.c.domain_name == domain_name, identity_job.c.job_id == job_id
        )
    ).first()
    if row is None:
        raise NotFound(
            f"The identity resolution job {job_id} does not exist in domain {domain_name}."
        )
    return _job(row)


def list_jobs(
    tx: Tx, *, domain_name: str, limit: int = 100, offset: int = 0
) -> tuple[list[JobRecord], bool]:
    """ListIdentityResolutionJobs: the domain's jobs, newest first; the flag says more follow.
    Like `get_job`, it answers whether or not Matching is on now (NotFound for an unknown
    domain): the two must agree on which jobs exist."""
    tx.cipher(domain_name)  # NotFound for an unknown domain
    rows = tx.conn.execute(
        select(identity_job)
        .where(identity_job.c.domain_name == domain_name)
        .order_by(identity_job.c.created_at.desc(), identity_job.c.job_id)
        .offset(offset)
        .limit(limit + 1)
    ).all()
    return [_job(r) for r in rows[:limit]], len(rows) > limit


# ---------------------------------------------------------------------------- match groups


def list_groups(
    tx: Tx, *, domain_name: str, limit: int = 100, after: str | None = None
) -> MatchPage:
    """GetMatches: the latest completed job's groups in MatchId order after `after`."""
    matching_config(tx, domain_name)
    generated = tx.conn.execute(
        select(func.max(identity_job.c.ended_at)).where(
            identity_job.c.domain_name == domain_name, identity_job.c.status == COMPLETED
        )
    ).scalar_one_or_none()
    return ml_groups.list_groups(
        tx, domain_name=domain_name, limit=limit, after=after, generated_at=generated
    )


def get_group(tx: Tx, *, domain_name: str, match_id: str) -> MatchGroup:
    """One group with its explanation (which attributes agreed, with what Splink weight)."""
    matching_config(tx, domain_name)
    return ml_groups.get_group(tx, domain_name=domain_name, match_id=match_id)


def similar_profiles(
    tx: Tx, *, domain_name: str, search_key: str, search_value: str
) -> MatchGroup | None:
    """GetSimilarProfiles for ML_BASED_MATCHING: the group of a profile the key finds (the most
    confident one when the key finds several); NotFound when the key finds no profile."""
    matching_config(tx, domain_name)
    page, _ = profiles.search_profiles(
        tx,
        domain_name=domain_name,
        criteria=[profiles.SearchCriterion(search_key, (search_value,))],
        limit=100,
    )
    if not page:
        raise NotFound(f"No profile has the value given for key {search_key}.")
    ids = [record.profile_id for record, _ in page]
    match_ids = sorted(ml_groups.match_ids_of(tx, domain_name=domain_name, profile_ids=ids))
    if not match_ids:
        return None
    groups = [get_group(tx, domain_name=domain_name, match_id=m) for m in match_ids]
    return max(groups, key=lambda g: (g.confidence, g.match_id))


# ---------------------------------------------------------------------------- auto-merging


def validate_consolidation(consolidation: dict[str, Any] | None) -> None:
    """BadRequest for a Consolidation attribute that names no profile attribute: such a
    criterion could never hold, so nothing would ever merge, silently."""
    for criterion in (consolidation or {}).get("MatchingAttributesList") or []:
        for attribute in criterion:
            if not _is_profile_attribute(attribute):
                raise BadRequest(
                    f"Consolidation.MatchingAttributesList names {attribute}, which is not a "
                    "profile attribute: use a standard profile field (FirstName, EmailAddress, "
                    "PhoneNumber, ...), an address part such as Address.City, or "
                    "Attributes.<name>."
                )


def _is_profile_attribute(attribute: str) -> bool:
    if attribute.startswith("Attributes."):
        return len(attribute) > len("Attributes.")
    if "." in attribute:
        kind, part = attribute.split(".", 1)
        return kind in ADDRESS_FIELDS and part in ADDRESS_PARTS
    return attribute in STRING_FIELDS


def _attribute_value(fields: dict[str, Any], attribute: str, region: str) -> str:
    """The comparable value of a Consolidation attribute ("" when the profile has none)."""
    if attribute.startswith("Attributes."):
        raw = (fields.get("Attributes") or {}).get(attribute[len("Attributes.") :])
        return str(raw).strip().casefold() if raw else ""
    if "." in attribute:
        kind, part = attribute.split(".", 1)
        address = fields.get(kind)
        raw = address.get(part) if isinstance(address, dict) else None
        return " ".join(str(raw).split()).casefold() if raw else ""
    raw = fields.get(attribute)
    if not isinstance(raw, str) or not raw.strip():
        return ""
    if "Email" in attribute:
        return normalize(ContentType.EMAIL_ADDRESS, raw, phone_region=region)
    if "Phone" in attribute:
        return normalize(ContentType.PHONE_NUMBER, raw, phone_region=region)
    return normalize(ContentType.NAME, raw, phone_region=region)


def merge_plan(
    records: dict[str, Any], criteria: Sequence[Sequence[str]], region: str
) -> list[list[str]]:
    """Sets of profile ids to merge within one group: profiles equal on every attribute of a
    criterion join (AND within, OR across criteria, each on the previous results, spec §5.2)."""
    parent = {pid: pid for pid in records}

    def root(pid: str) -> str:
        while parent[pid] != pid:
            parent[pid] = parent[parent[pid]]
            pid = parent[pid]
        return pid

    for criterion in criteria:
        seen: dict[tuple[str, ...], str] = {}
        for pid in sorted(records):
            values = tuple(_attribute_value(records[pid].fields, a, region) for a in criterion)
            if not criterion or not all(values):
                continue
            if values in seen:
                parent[root(pid)] = root(seen[values])
            else:
                seen[values] = pid
    sets: dict[str, list[str]] = {}
    for pid in records:
        sets.setdefault(root(pid), []).append(pid)
    return [sorted(s) for s in sets.values() if len(s) > 1]


@dataclass(frozen=True)
class MergePreview:
    matches_in_sample: int
    profiles_in_sample: int
    profiles_to_merge: int


# GetAutoMergingPreview looks at a sample of the latest job's groups (spec §5.2: "a random
# sample of existing match groups"); this many at most.
PREVIEW_SAMPLE = 1_000


def auto_merging_preview(
    tx: Tx,
    *,
    domain_name: str,
    consolidation: dict[str, Any],
    min_confidence: float | None,
) -> MergePreview:
    """What auto-merging with these settings would do to a sample of the current match
    groups, without merging: the same plan `auto_merge` follows. `profiles_to_merge` counts
    the profiles that would be merged into another (a set of n merges n - 1 of them)."""
    matching_config(tx, domain_name)
    criteria = consolidation.get("MatchingAttributesList") or []
    minimum = float(min_confidence or 0.0)
    region = tx.settings.default_phone_region
    sample = [
        g
        for g in list_groups(tx, domain_name=domain_name, limit=PREVIEW_SAMPLE).groups
        if g.confidence >= minimum
    ]
    # Counted as merge_group (the job's) merges: into the main profile it picks, only the
    # profiles an undone merge did not separate from it or from each other (`_joinable`), or
    # the preview would promise merges the job then leaves out.
    from openprofiles.identity.matching import _joinable

    to_merge = 0
    for group in sample:
        for main, ids in _planned_merges(tx, domain_name, group, criteria, region):
            to_merge += len(_joinable(tx, domain_name, main, [p for p in ids if p != main]))
    return MergePreview(
        matches_in_sample=len(sample),
        profiles_in_sample=sum(len(g.profile_ids) for g in sample),
        profiles_to_merge=to_merge,
    )


def auto_merge(
    tx: Tx, *, domain_name: str, groups: Sequence[MatchGroup], auto: dict[str, Any]
) -> int:
    """Merge what Consolidation says within groups at or above the minimum confidence; returns
    the number of merges (each logged and undoable)."""
    from openprofiles.identity.matching import RuleConfig, merge_group, no_auto_merge

    criteria = (auto.get("Consolidation") or {}).get("MatchingAttributesList") or []
    if not criteria:
        return 0
    minimum = float(auto.get("MinAllowedConfidenceScoreForMerging") or 0.0)
    resolution = auto.get("ConflictResolution") or {}
    rules = RuleConfig(
        levels=(),
        max_matching=0,
        max_merging=0,
        one_to_one=True,
        sub_types={},
        conflict=resolution.get("ConflictResolvingModel") or "RECENCY",
        source_name=resolution.get("SourceName"),
    )
    region = tx.settings.default_phone_region
    merges = 0
    with no_auto_merge():
        for group in groups:
            if group.confidence < minimum:
                continue
            for main, ids in _planned_merges(tx, domain_name, group, criteria, region):
                # In chunks of the API's 20, each resolved against the main profile as the
                # chunk before left it (as rule-based auto-merging does).
                merges += merge_group(tx, domain_name, rules, main, ids)
    return merges


def _planned_merges(
    tx: Tx,
    domain_name: str,
    group: MatchGroup,
    criteria: Sequence[Sequence[str]],
    region: str,
) -> list[tuple[str, list[str]]]:
    """The merges Consolidation plans within a group's live profiles (`merge_plan`): per set,
    the main profile (the one updated last, of two the greater id) and the set's ids. Shared by
    `auto_merge` and `auto_merging_preview`, so the preview plans what the job does."""
    records = profiles.get_profiles(tx, domain_name=domain_name, profile_ids=group.profile_ids)
    live = {pid: r for pid, r in records.items() if r.profile_id == pid}
    planned = []
    for ids in merge_plan(live, criteria, region):
        main = max((live[p] for p in ids), key=lambda r: (r.updated_at, r.profile_id))
        planned.append((main.profile_id, ids))
    return planned
