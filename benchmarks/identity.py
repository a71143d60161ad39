"""Identity resolution on a synthetic population with known duplicates (issue 6).

Generates people, some of them with duplicate profiles (typos of edit distance 1-2 in names,
phone numbers and emails written other ways, emails with dots removed, addresses and birth
dates written other ways, fields missing) and households whose members share a phone and an
address but are different people (their profiles must not match). Every profile carries the
ground-truth id of its person. The profiles are loaded in-process through the profiles
service's batched writes into a domain with `Matching` enabled, then the benchmark measures:

  (a) the full rule-based pass (UpdateDomain carrying RuleBasedMatching, which rebuilds every
      match digest of the domain, until the rules are ACTIVE), and the match groups
      ListRuleBasedMatches then lists;
  (b) a probabilistic matching job (identity.ml_jobs.run_matching_job);
  (c) a plain Splink 5 run on DuckDB over the raw values of the same population (cleaned in
      SQL, Splink's standard comparisons of the same attributes and the job's blocking rules,
      trained the usual Splink way) -- the baseline;
  (d) incremental matching: duplicates of existing people written with CreateProfile through
      the profiles service, and the time from the write's commit until ListRuleBasedMatches
      lists the new match.

Precision and recall are pairwise: the pairs of profiles within a predicted group against the
pairs of profiles of one person.

    .venv/bin/python benchmarks/identity.py --profiles 10000
    nice -n 10 .venv/bin/python benchmarks/identity.py --profiles 100000 --data-dir /tmp/op-bench-id
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import random
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import summary_ms  # noqa: E402
from openprofiles.app import build_services  # noqa: E402
from openprofiles.context import Principal, RequestContext, Services  # noqa: E402
from openprofiles.domains.handlers import create_domain, update_domain  # noqa: E402
from openprofiles.domains.service import get_domain  # noqa: E402
from openprofiles.identity import matching, ml_jobs, rule_activation  # noqa: E402
from openprofiles.profiles import service as profiles  # noqa: E402
from openprofiles.settings import Settings  # noqa: E402

DOMAIN = "idbench"

# Rule levels a careful administrator might set: a person's name with one strong identifier,
# then pairs of identifiers, never an identifier a household shares (phone, address) alone.
RULES = [
    ["FirstName", "LastName", "EmailAddress"],
    ["FirstName", "LastName", "PhoneNumber"],
    ["EmailAddress", "PhoneNumber"],
    ["FirstName", "LastName", "BirthDate", "Address.PostalCode"],
    ["EmailAddress", "BirthDate"],
    ["PhoneNumber", "BirthDate"],
]
RULE_BASED_MATCHING = {
    "Enabled": True,
    "MatchingRules": [{"Rule": r} for r in RULES],
    "MaxAllowedRuleLevelForMatching": len(RULES),
    "AttributeTypesSelector": {"AttributeMatchingModel": "ONE_TO_ONE"},
}

# ---------------------------------------------------------------------------- the population

# Names are made of syllables: consonant-vowel pairs and a few vowel-consonant ones.
_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwyz" for v in "aeio"] + ["al", "an", "er"]
_SUFFIXES = [("St", "Street"), ("Ave", "Avenue"), ("Rd", "Road"), ("Dr", "Drive"), ("Ln", "Lane")]
_MAIL_HOSTS = ["gmail.com", "yahoo.com", "outlook.com", "example.org", "icloud.com", "aol.com"]
_PHONE_FORMATS = [
    "+1 ({a}) {e}-{l}",
    "{a}{e}{l}",
    "({a}) {e}-{l}",
    "{a}-{e}-{l}",
    "{a}.{e}.{l}",
    "+1{a}{e}{l}",
    "1 {a} {e} {l}",
]


def _pool(rng: random.Random, size: int, parts: tuple[int, ...]) -> list[str]:
    names: dict[str, None] = {}
    while len(names) < size:
        names["".join(rng.choice(_SYLLABLES) for _ in range(rng.choice(parts))).capitalize()] = None
    return list(names)


def _zipf(size: int, exponent: float) -> list[float]:
    """Cumulative weights of a Zipf-like distribution: a few names are common, most rare."""
    total = 0.0
    out = []
    for rank in range(1, size + 1):
        total += 1 / rank**exponent
        out.append(total)
    return out


@dataclass
class Person:
    first: str
    last: str
    email: str | None
    phone: str | None  # ten digits
    birth: tuple[int, int, int] | None
    address: tuple[int, str, int, str, str] | None  # number, street, suffix, city, postal code


@dataclass
class Population:
    fields: list[dict[str, Any]] = field(default_factory=list)
    person: list[int] = field(default_factory=list)  # ground truth: whose profile it is
    ids: list[str] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    households: int = 0
    household_people: int = 0

    def true_pairs(self) -> int:
        return sum(n * (n - 1) // 2 for n in Counter(self.person).values())


def _typo(rng: random.Random, word: str) -> str:
    """`word` at Levenshtein distance 1 or 2 (substitution, deletion or insertion)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = word
    for _ in range(rng.choice((1, 1, 2))):
        i = rng.randrange(len(out))
        op = rng.random()
        if op < 0.4:
            out = out[:i] + rng.choice(letters.replace(out[i].lower(), "")) + out[i + 1 :]
        elif op < 0.7 and len(out) > 3:
            out = out[:i] + out[i + 1 :]
        else:
            out = out[:i] + rng.choice(letters) + out[i:]
    out = out[:1].upper() + out[1:].lower()
    return out if out != word else word + "e"


def _phone_text(rng: random.Random, digits: str) -> str:
    return rng.choice(_PHONE_FORMATS).format(a=digits[:3], e=digits[3:6], l=digits[6:])


def _fields(rng: random.Random, p: Person, duplicate: bool) -> dict[str, Any]:
    """The profile fields of one record of person `p`; a duplicate record varies them."""
    chance = rng.random
    first, last = p.first, p.last
    if duplicate and chance() < 0.25:
        first = _typo(rng, first)
    if duplicate and chance() < 0.15:
        last = _typo(rng, last)
    out: dict[str, Any] = {"FirstName": first, "LastName": last}
    if p.email and not (duplicate and chance() < 0.15):
        email = p.email
        if duplicate and chance() < 0.3:
            local, host = email.split("@")
            email = f"{local.title()}@{host.capitalize()}"
        if duplicate and chance() < 0.15:
            email = email.replace(".", "", 1) if "." in email.split("@")[0] else email
        out["EmailAddress"] = email
    if p.phone and not (duplicate and chance() < 0.15):
        out["PhoneNumber"] = _phone_text(rng, p.phone)
    if p.birth and not (duplicate and chance() < 0.25):
        y, m, d = p.birth
        if duplicate and chance() < 0.03:
            d = d % 28 + 1
        as_us = duplicate and chance() < 0.1
        out["BirthDate"] = f"{m:02d}/{d:02d}/{y}" if as_us else f"{y}-{m:02d}-{d:02d}"
    if p.address and not (duplicate and chance() < 0.15):
        number, street, suffix, city, postal = p.address
        short, long = _SUFFIXES[suffix]
        written = long if (duplicate and chance() < 0.3) else short
        if duplicate and chance() < 0.2:
            city = city.upper()
        if duplicate and chance() < 0.03:
            postal = f"{postal}-{rng.randrange(10000):04d}"
        out["Address"] = {
            "Address1": f"{number} {street} {written}",
            "City": city,
            "PostalCode": postal,
            "Country": "US",
        }
    return out


def make_population(
    count: int,
    dup_rate: float,
    household_rate: float,
    seed: int,
    *,
    first_names: int = 3000,
    last_names: int = 30000,
    birth_dates: int | None = None,
) -> Population:
    """`count` profiles: one per person plus `dup_rate` of them duplicates of earlier people;
    `household_rate` of the people live in households of 2-4 sharing a phone and address.
    Names come from pools of `first_names` and `last_names`; birth dates from 1940-2006, or
    from `birth_dates` dates of it (many unrelated people then share one)."""
    rng = random.Random(seed)
    firsts = _pool(rng, first_names, (2, 2, 3))
    lasts = _pool(rng, last_names, (2, 3, 3, 4))
    # From a generator of its own: the default population stays the one the figures are of.
    dates = random.Random(seed + 1)
    few_dates = [
        (dates.randrange(1940, 2007), dates.randrange(1, 13), dates.randrange(1, 29))
        for _ in range(birth_dates or 0)
    ]
    streets = _pool(rng, 2000, (2, 3))
    cities = _pool(rng, 1500, (2, 3))
    postals = {
        c: [f"{rng.randrange(10000, 99999)}" for _ in range(rng.choice((1, 2, 3)))] for c in cities
    }
    first_w, last_w = _zipf(len(firsts), 0.9), _zipf(len(lasts), 0.7)
    pop = Population()
    people_count = max(1, count - round(count * dup_rate))
    used_phones: set[str] = set()
    used_emails: set[str] = set()

    def phone() -> str:
        while True:
            digits = (
                f"{rng.randrange(201, 990)}{rng.randrange(200, 1000)}{rng.randrange(10000):04d}"
            )
            if digits not in used_phones:
                used_phones.add(digits)
                return digits

    def email(first: str, last: str) -> str:
        base = f"{first.lower()}.{last.lower()}"
        candidate = f"{base}@{rng.choice(_MAIL_HOSTS)}"
        while candidate in used_emails:
            candidate = f"{base}{rng.randrange(1, 10000)}@{rng.choice(_MAIL_HOSTS)}"
        used_emails.add(candidate)
        return candidate

    def address() -> tuple[int, str, int, str, str]:
        city = rng.choice(cities)
        return (
            rng.randrange(1, 10000),
            rng.choice(streets),
            rng.randrange(len(_SUFFIXES)),
            city,
            rng.choice(postals[city]),
        )

    def birth() -> tuple[int, int, int] | None:
        if rng.random() < 0.2:
            return None
        if few_dates:
            return rng.choice(few_dates)
        return (rng.randrange(1940, 2007), rng.randrange(1, 13), rng.randrange(1, 29))

    average = 3.0  # of households of 2, 3 or 4
    unit_is_household = household_rate / (average * (1 - household_rate) + household_rate)
    while len(pop.people) < people_count:
        if rng.random() < unit_is_household:
            size = min(rng.choice((2, 3, 4)), people_count - len(pop.people))
            shared_last = rng.choices(lasts, cum_weights=last_w)[0]
            shared_phone, shared_address = phone(), address()
            pop.households += 1
            pop.household_people += size
            for _ in range(size):
                first = rng.choices(firsts, cum_weights=first_w)[0]
                last = (
                    shared_last if rng.random() < 0.9 else rng.choices(lasts, cum_weights=last_w)[0]
                )
                pop.people.append(
                    Person(
                        first,
                        last,
                        email(first, last) if rng.random() < 0.9 else None,
                        shared_phone,
                        birth(),
                        shared_address,
                    )
                )
        else:
            first = rng.choices(firsts, cum_weights=first_w)[0]
            last = rng.choices(lasts, cum_weights=last_w)[0]
            pop.people.append(
                Person(
                    first,
                    last,
                    email(first, last) if rng.random() < 0.95 else None,
                    phone() if rng.random() < 0.95 else None,
                    birth(),
                    address() if rng.random() < 0.9 else None,
                )
            )
    owners = list(range(len(pop.people))) + [
        rng.randrange(len(pop.people)) for _ in range(count - len(pop.people))
    ]
    rng.shuffle(owners)
    seen: set[int] = set()
    for owner in owners:
        pop.fields.append(_fields(rng, pop.people[owner], duplicate=owner in seen))
        seen.add(owner)
        pop.person.append(owner)
        pop.ids.append(f"{rng.getrandbits(128):032x}")
    return pop


# ---------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Quality:
    precision: float
    recall: float
    f1: float
    predicted: int
    correct: int
    household: int  # wrong pairs of two people of one household

    def __str__(self) -> str:
        return (
            f"precision {self.precision:.4f}  recall {self.recall:.4f}  F1 {self.f1:.4f}  "
            f"({self.correct:,} of {self.predicted:,} predicted pairs correct; of the wrong "
            f"ones, {self.household:,} are two people of one household)"
        )


def pairwise(groups: Iterable[Sequence[int]], pop: Population, true_pairs: int) -> Quality:
    """Pairs of profiles within predicted groups (groups may overlap; a pair counts once)
    against the pairs of profiles of one person."""
    pairs: set[tuple[int, int]] = set()
    for group in groups:
        ordered = sorted(group)
        for i, left in enumerate(ordered):
            pairs.update((left, right) for right in ordered[i + 1 :])
    person = pop.person
    correct = sum(1 for left, right in pairs if person[left] == person[right])
    household = 0
    for left, right in pairs:
        a, b = pop.people[person[left]], pop.people[person[right]]
        # Only household members share a phone (every other person's number is unique).
        household += a is not b and a.phone is not None and a.phone == b.phone
    precision = correct / len(pairs) if pairs else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Quality(precision, recall, f1, len(pairs), correct, household)


def timed(label: str, run: Callable[[], Any], profile_to: Path | None) -> tuple[Any, float]:
    """Run `run`; with `profile_to`, under cProfile, printing where the time went."""
    profiler = cProfile.Profile() if profile_to else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    result = run()
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler and profile_to:
        profile_to.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile_to / f"{label}.pstats")
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
        print(f"--- cProfile of {label} (cumulative, top 30) ---\n{text.getvalue()}")
    return result, seconds


# ---------------------------------------------------------------------------- loading


def context(services: Services) -> RequestContext:
    return RequestContext(services=services, principal=Principal("bench", "admin"))


def load(services: Services, pop: Population, batch: int) -> float:
    """CreateDomain with Matching enabled, then every profile through the profiles service's
    batched write (the one ingestion uses), `batch` per transaction."""
    create_domain(
        context(services),
        {"DomainName": DOMAIN, "DefaultExpirationDays": 366, "Matching": {"Enabled": True}},
    )
    started = time.perf_counter()
    for first in range(0, len(pop.fields), batch):
        with services.write() as tx:
            records = [
                profiles.new_profile_record(
                    tx, fields=pop.fields[i], manual=False, profile_id=pop.ids[i]
                )
                for i in range(first, min(len(pop.fields), first + batch))
            ]
            profiles.write_profiles(tx, domain_name=DOMAIN, created=records, updated=[])
        done = min(len(pop.fields), first + batch)
        if done % (batch * 20) == 0 or done == len(pop.fields):
            rate = done / (time.perf_counter() - started)
            print(f"  loaded {done:,} profiles ({rate:,.0f}/s)", flush=True)
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- (a) rules


def rule_pass(services: Services) -> None:
    """UpdateDomain carrying the rules, until they are ACTIVE: a large domain's pass runs
    right after the request (identity.rule_activation), so the time includes waiting for it."""
    update_domain(
        context(services), {"DomainName": DOMAIN, "RuleBasedMatching": RULE_BASED_MATCHING}
    )
    assert rule_activation.wait(DOMAIN)
    with services.read() as tx:
        rules = get_domain(tx, domain_name=DOMAIN).config["RuleBasedMatching"]
    assert rules["Status"] == "ACTIVE", rules.get("Status")


def rules_off(services: Services) -> None:
    """Turn the rules off (which drops every digest, after the request on a large domain), so
    a kept data dir's pass is timed as the first one on a freshly loaded domain is: from no
    digests, with the write-ahead log copied into the database (the loader's last connection
    does that when it closes)."""
    started = time.perf_counter()
    update_domain(
        context(services),
        {"DomainName": DOMAIN, "RuleBasedMatching": {**RULE_BASED_MATCHING, "Enabled": False}},
    )
    answered = time.perf_counter()
    assert rule_activation.wait(DOMAIN)
    print(
        f"    rules off: UpdateDomain answered in {answered - started:.2f} s, digests cleared "
        f"{time.perf_counter() - answered:.2f} s later"
    )
    if services.settings.is_sqlite:
        with services.database.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def rule_groups(services: Services) -> tuple[list[tuple[str, ...]], list[float]]:
    """Every rule-based match group: ListRuleBasedMatches' ids, a page of 100 (its most) per
    read transaction as a client pages, each opened with GetMatch's service function; and the
    seconds each page took."""
    ids: list[str] = []
    pages: list[float] = []
    after = None
    while True:
        started = time.perf_counter()
        with services.read() as tx:
            page, more = matching.list_matches(tx, domain_name=DOMAIN, limit=100, after=after)
        pages.append(time.perf_counter() - started)
        ids += page
        if not more:
            break
        after = page[-1]
    with services.read() as tx:
        groups = [matching.get_match(tx, domain_name=DOMAIN, match_id=m).profile_ids for m in ids]
    return groups, pages


# ---------------------------------------------------------------------------- (b) the job


def ml_groups(services: Services) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    after = None
    with services.read() as tx:
        while True:
            page = ml_jobs.list_groups(tx, domain_name=DOMAIN, limit=10_000, after=after)
            out.extend(g.profile_ids for g in page.groups)
            if not page.more:
                return out
            after = page.groups[-1].match_id


# ---------------------------------------------------------------------------- (c) plain Splink

# What a Splink user would write: clean the raw values in SQL, then Splink's standard
# comparisons of the job's attributes (each on its own: the job compares the address only where
# the phones differ and adjusts the phone for its frequency) and the job's blocking rules, with
# parameters trained the usual way (lambda from deterministic rules, u by random sampling, m by
# EM).
_CLEAN_SQL = """
CREATE TABLE people AS SELECT
    unique_id,
    nullif(lower(trim(regexp_replace(first_name, '\\s+', ' ', 'g'))), '') AS first_name,
    nullif(lower(trim(regexp_replace(last_name, '\\s+', ' ', 'g'))), '') AS last_name,
    nullif(lower(trim(email)), '') AS email,
    nullif(right(regexp_replace(phone, '[^0-9]', '', 'g'), 10), '') AS phone,
    nullif(lower(replace(postal_code, ' ', '')), '') AS postal_code,
    nullif(lower(trim(city)), '') AS city,
    CAST(coalesce(try_strptime(birth_date, '%Y-%m-%d'), try_strptime(birth_date, '%m/%d/%Y'))
         AS DATE)::VARCHAR AS birth_date
FROM raw
"""


def plain_columns(pop: Population) -> dict[str, list[Any]]:
    """The raw values, column by column, as a table built straight from source data would be."""
    columns: dict[str, list[Any]] = {
        c: []
        for c in (
            "unique_id",
            "first_name",
            "last_name",
            "email",
            "phone",
            "postal_code",
            "city",
            "birth_date",
        )
    }
    for i, f in enumerate(pop.fields):
        address = f.get("Address") or {}
        columns["unique_id"].append(i)
        columns["first_name"].append(f.get("FirstName"))
        columns["last_name"].append(f.get("LastName"))
        columns["email"].append(f.get("EmailAddress"))
        columns["phone"].append(f.get("PhoneNumber"))
        columns["postal_code"].append(address.get("PostalCode"))
        columns["city"].append(address.get("City"))
        columns["birth_date"].append(f.get("BirthDate"))
    return columns


def plain_splink(columns: dict[str, list[Any]], threshold: float) -> list[list[int]]:
    import duckdb
    import pyarrow as pa
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)  # untrained-level notices, not figures
    connection = duckdb.connect(":memory:")
    connection.register("raw", pa.table(columns))
    connection.execute(_CLEAN_SQL)
    connection.unregister("raw")
    db_api = DuckDBAPI(connection)
    table = db_api.register("people")
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.JaroWinklerAtThresholds("first_name", [0.92, 0.8]),
            cl.JaroWinklerAtThresholds("last_name", [0.92, 0.8]),
            cl.LevenshteinAtThresholds("email", [2]),
            cl.LevenshteinAtThresholds("phone", [1]),
            cl.ExactMatch("postal_code"),
            cl.ExactMatch("city"),
            cl.LevenshteinAtThresholds("birth_date", [1]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("phone"),
            block_on("email"),
            block_on("postal_code", "substr(last_name, 1, 1)"),
            block_on("birth_date"),
        ],
        retain_matching_columns=False,
    )
    linker = Linker(table, settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("first_name", "last_name", "phone")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    for rule in (block_on("phone"), block_on("birth_date")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=threshold)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold)
    by_cluster: dict[Any, list[int]] = {}
    for row in connection.execute(
        f"SELECT cluster_id, unique_id FROM {clusters.physical_name}"
    ).fetchall():
        by_cluster.setdefault(row[0], []).append(int(row[1]))
    connection.close()
    return [ids for ids in by_cluster.values() if len(ids) > 1]


# ---------------------------------------------------------------------------- (d) incremental


def _rule_digests(services: Services, fields: dict[str, Any]) -> set[tuple[int, bytes]]:
    with services.read() as tx:
        rules = matching.domain_rules(tx, DOMAIN)
        assert rules is not None
        region = tx.settings.default_phone_region
        return matching.profile_digests(tx.cipher(DOMAIN), rules, fields, region)


def incremental(
    services: Services, pop: Population, count: int, seed: int
) -> tuple[list[float], list[float], list[str]]:
    """Write `count` duplicates of people who had one profile and no match, one CreateProfile
    per transaction; per write, the seconds from the commit and from the start of the write
    until ListRuleBasedMatches lists the new match. Returns the ids written."""
    rng = random.Random(seed)
    sizes = Counter(pop.person)
    with services.read() as tx:
        listed = set(matching.list_matches(tx, domain_name=DOMAIN, limit=len(pop.ids))[0])
    candidates = [
        i
        for i, f in enumerate(pop.fields)
        if sizes[pop.person[i]] == 1 and "EmailAddress" in f and "PhoneNumber" in f
    ]
    rng.shuffle(candidates)
    from_commit: list[float] = []
    from_write: list[float] = []
    written: list[str] = []
    ctx = context(services)
    for i in candidates:
        if len(written) == count:
            break
        original = pop.fields[i]
        local, host = original["EmailAddress"].split("@")
        duplicate = {
            **original,
            "EmailAddress": f"{local.title()}@{host.upper()}",
            "PhoneNumber": _phone_text(
                rng, "".join(c for c in original["PhoneNumber"] if c.isdigit())[-10:]
            ),
        }
        shared = _rule_digests(services, original) & _rule_digests(services, duplicate)
        if not shared:
            continue
        level, digest = min(shared)
        expected = matching.match_id(level, digest)
        # The MatchId just before the expected one, as a NextToken would hold it.
        previous = (int.from_bytes(digest, "big") - 1).to_bytes(len(digest), "big")
        before = matching.match_id(level, previous)
        if expected in listed:
            continue  # the original is already in a group there: nothing new would be listed
        started = time.perf_counter()
        with ctx.write() as tx:
            record = profiles.create_profile(tx, domain_name=DOMAIN, fields=duplicate)
        committed = time.perf_counter()
        while True:
            with ctx.read() as tx:
                # MatchIds come in order: ask for the page that starts where it would be.
                ids, _ = matching.list_matches(tx, domain_name=DOMAIN, limit=1, after=before)
            if ids == [expected]:
                break
        visible = time.perf_counter()
        from_commit.append(visible - committed)
        from_write.append(visible - started)
        written.append(record.profile_id)
        with ctx.read() as tx:
            found = matching.get_match(tx, domain_name=DOMAIN, match_id=expected)
        assert record.profile_id in found.profile_ids and pop.ids[i] in found.profile_ids
        listed.add(expected)
    return from_commit, from_write, written


def forget(services: Services, profile_ids: Sequence[str]) -> None:
    """Delete what (d) wrote, so a kept data dir holds the generated population again."""
    with services.write() as tx:
        for pid in profile_ids:
            profiles.delete_profile(tx, domain_name=DOMAIN, profile_id=pid)


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--dup-rate", type=float, default=0.3, help="share of duplicate profiles")
    parser.add_argument(
        "--household-rate", type=float, default=0.15, help="share of people sharing a phone"
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--first-names", type=int, default=3000, help="first-name pool size")
    parser.add_argument("--last-names", type=int, default=30000, help="last-name pool size")
    parser.add_argument(
        "--birth-dates", type=int, help="draw birth dates from this many (default: any date)"
    )
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--incremental", type=int, default=200, help="writes timed in (d)")
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/.work/identity"))
    parser.add_argument("--reuse", action="store_true", help="keep an already loaded data dir")
    parser.add_argument("--skip-rules", action="store_true")
    parser.add_argument(
        "--skip-rule-groups",
        action="store_true",
        help="time (a) without then paging through its groups (quality not measured)",
    )
    parser.add_argument("--skip-job", action="store_true")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument(
        "--rule-pass-processes",
        type=int,
        help="worker processes of the full rule pass (default: one per core; 0: none)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="run (b) and (c) this many times, alternated, and compare their medians: on a "
        "shared machine one pair's ratio varies by a tenth or more",
    )
    parser.add_argument("--cprofile", type=Path, help="profile (a), (b) and (c) into this dir")
    args = parser.parse_args()
    # The rule pass logs where its time went.
    logging.basicConfig(format="    %(message)s")
    logging.getLogger("openprofiles.identity.matching").setLevel(logging.INFO)

    started = time.perf_counter()
    pop = make_population(
        args.profiles,
        args.dup_rate,
        args.household_rate,
        args.seed,
        first_names=args.first_names,
        last_names=args.last_names,
        birth_dates=args.birth_dates,
    )
    true_pairs = pop.true_pairs()
    index = {pid: i for i, pid in enumerate(pop.ids)}
    print(
        f"Population: {len(pop.fields):,} profiles of {len(pop.people):,} people "
        f"({len(pop.fields) - len(pop.people):,} duplicates, {true_pairs:,} true pairs); "
        f"{pop.households:,} households of {pop.household_people:,} people sharing a phone "
        f"and an address (generated in {time.perf_counter() - started:.1f} s)"
    )

    # No weekly job limit: a kept data dir runs a job each time.
    settings = Settings(
        data_dir=args.data_dir,
        matching_jobs_per_week=0,
        rule_pass_processes=args.rule_pass_processes,
    )
    if not (args.reuse and settings.sqlite_path.exists()):
        shutil.rmtree(args.data_dir, ignore_errors=True)
        print(f"Loading into {settings.sqlite_path} ...")
        loader = build_services(settings)
        seconds = load(loader, pop, args.batch)
        loader.database.dispose()
        print(f"  {len(pop.fields) / seconds:,.0f} profiles/s")
    services = build_services(settings)  # a kept data dir gets the current schema
    # Splink, DuckDB and Arrow are imported before (b) and (c) are timed: a server process
    # imports them once, and the first timed run would otherwise pay it (0.4-1 s) alone.
    import duckdb  # noqa: F401
    import pyarrow  # noqa: F401
    import splink  # noqa: F401

    def scored(groups: Iterable[Sequence[str]]) -> Quality:
        return pairwise(([index[p] for p in g] for g in groups), pop, true_pairs)

    figures: list[tuple[str, float, Quality | None]] = []
    if not args.skip_rules:
        rules_off(services)
        _, seconds = timed("rules", lambda: rule_pass(services), args.cprofile)
        print(f"(a) rule-based full pass (UpdateDomain RuleBasedMatching): {seconds:.2f} s")
        sys.stdout.flush()
    if not args.skip_rules and not args.skip_rule_groups:
        groups, pages = rule_groups(services)
        quality = scored(groups)
        figures.append(("(a) rule-based full pass", seconds, quality))
        print(f"    {len(groups):,} match groups; {quality}")
        print(
            f"    ListRuleBasedMatches, pages of 100, service function: {sum(pages):.2f} s for "
            f"all; a page {summary_ms(pages)}"
        )
    columns = plain_columns(pop) if not args.skip_plain else {}
    job_seconds: list[float] = []
    plain_seconds: list[float] = []
    for round_ in range(max(args.pairs, 1)):
        last = round_ == max(args.pairs, 1) - 1
        if not args.skip_job:
            job, seconds = timed(
                "job",
                lambda: ml_jobs.run_matching_job(services, domain_name=DOMAIN),
                args.cprofile,
            )
            assert job.status == ml_jobs.COMPLETED, (job.status, job.message)
            job_seconds.append(seconds)
            print(f"(b) probabilistic matching job (run_matching_job): {seconds:.2f} s")
            if last:  # every run finds the same groups
                groups = ml_groups(services)
                quality = scored(groups)
                figures.append(("(b) probabilistic job", statistics.median(job_seconds), quality))
                print(f"    {len(groups):,} match groups ({job.message or 'trained'}); {quality}")
        if not args.skip_plain:
            clusters, seconds = timed(
                "plain",
                lambda: plain_splink(columns, ml_jobs.MATCH_THRESHOLD),
                args.cprofile,
            )
            plain_seconds.append(seconds)
            print(f"(c) plain Splink 5, DuckDB, raw values cleaned in SQL: {seconds:.2f} s")
            if last:
                quality = pairwise(clusters, pop, true_pairs)
                figures.append(("(c) plain Splink", statistics.median(plain_seconds), quality))
                print(f"    {len(clusters):,} clusters; {quality}")
        if job_seconds and plain_seconds:
            print(f"    pair {round_ + 1}: job / plain {job_seconds[-1] / plain_seconds[-1]:.2f}x")
    if args.incremental:
        from_commit, from_write, written = incremental(
            services, pop, args.incremental, args.seed + 1
        )
        print("(d) CreateProfile of a duplicate -> ListRuleBasedMatches lists the match")
        print(f"    from the commit: {summary_ms(from_commit)}")
        print(f"    from the start of the write: {summary_ms(from_write)}")
        forget(services, written)
    plain = next((f for f in figures if f[0].startswith("(c)")), None)
    job_figure = next((f for f in figures if f[0].startswith("(b)")), None)
    if plain and job_figure and plain[2] and job_figure[2]:
        ratios = sorted(j / p for j, p in zip(job_seconds, plain_seconds, strict=True))
        spread = f" (pairs {ratios[0]:.2f}-{ratios[-1]:.2f}x)" if len(ratios) > 1 else ""
        print(
            f"job / plain Splink: time {statistics.median(ratios):.2f}x{spread}, "
            f"F1 {job_figure[2].f1:.4f} vs {plain[2].f1:.4f}"
        )
    services.database.dispose()


if __name__ == "__main__":
    main()
