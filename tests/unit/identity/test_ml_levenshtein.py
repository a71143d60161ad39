"""The guarded Levenshtein condition of matching jobs (identity.ml_levenshtein) is true exactly
when DuckDB's levenshtein distance is within the threshold, on pairs built to sit at and around
the thresholds (random edits of short strings over a small alphabet, with a combining mark and
a character beyond the Basic Multilingual Plane), and Splink's comparison built from it keeps
Splink's levels and labels."""

from __future__ import annotations

import random

import duckdb
import pyarrow as pa
import pytest
import splink.comparison_library as splink_cl

from openprofiles.identity.ml_levenshtein import LevenshteinAtThresholds, guarded_condition

ALPHABET = ["a", "b", "@", ".", "é", "1", "\u0301", "😀"]  # combining mark, astral


def _edited(rng: random.Random, word: str, edits: int) -> str:
    chars = list(word)
    for _ in range(edits):
        kind = rng.choice("sid")
        at = rng.randint(0, len(chars))
        if kind == "i" or not chars:
            chars.insert(at, rng.choice(ALPHABET))
        elif kind == "s":
            chars[min(at, len(chars) - 1)] = rng.choice(ALPHABET)
        else:
            del chars[min(at, len(chars) - 1)]
    return "".join(chars)


def _pairs(count: int) -> pa.Table:
    rng = random.Random(7)
    left, right = [], []
    for _ in range(count):
        word = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
        left.append(word)
        if rng.random() < 0.2:  # unrelated strings of any lengths
            right.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12))))
        else:
            right.append(_edited(rng, word, rng.randint(0, 4)))
    return pa.table({"v_l": left, "v_r": right})


@pytest.mark.parametrize("threshold", [1, 2, 3])
def test_guarded_condition_agrees_with_the_distance(threshold: int) -> None:
    connection = duckdb.connect()
    connection.register("pairs", _pairs(40_000))
    guarded = guarded_condition("v_l", "v_r", threshold)
    disagree, within, beyond, pruned = connection.execute(
        f"""
        SELECT count(*) FILTER (WHERE ({guarded}) <> (levenshtein(v_l, v_r) <= {threshold})),
               count(*) FILTER (WHERE levenshtein(v_l, v_r) <= {threshold}),
               count(*) FILTER (WHERE levenshtein(v_l, v_r) > {threshold}),
               count(*) FILTER (WHERE NOT ({guarded.rsplit(" AND ", 1)[0]}))
        FROM pairs
        """
    ).fetchone()
    assert disagree == 0
    # Both outcomes occur many times, and the guards alone rule many pairs out.
    assert within > 5_000 and beyond > 5_000
    assert pruned > 2_000


def test_levels_and_labels_are_splinks() -> None:
    ours = LevenshteinAtThresholds("email", [2]).get_comparison("duckdb")
    splinks = splink_cl.LevenshteinAtThresholds("email", [2]).get_comparison("duckdb")
    assert [level.label_for_charts for level in ours.comparison_levels] == [
        level.label_for_charts for level in splinks.comparison_levels
    ]
    assert ours.output_column_name == splinks.output_column_name
    guarded = ours.comparison_levels[2].sql_condition
    assert "levenshtein" in guarded and "contains" in guarded


def test_the_splink_sql_evaluates_like_the_distance() -> None:
    # The condition as Splink renders it (through its SQL parser) still agrees.
    level = LevenshteinAtThresholds("v", [1]).get_comparison("duckdb").comparison_levels[2]
    connection = duckdb.connect()
    connection.register("pairs", _pairs(5_000))
    (disagree,) = connection.execute(
        f"SELECT count(*) FILTER (WHERE ({level.sql_condition}) <> (levenshtein(v_l, v_r) <= 1)) "
        "FROM pairs"
    ).fetchone()
    assert disagree == 0
