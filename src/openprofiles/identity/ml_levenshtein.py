"""Splink's Levenshtein comparison, with the distance computed only for pairs that can be close.

DuckDB's `levenshtein` fills the whole edit matrix of every pair it is given: about a
microsecond for two email addresses. Most pairs a matching job compares are far apart — all of
the random pairs u is estimated on, most of the blocked ones — and computing their distance
was most of the job's time in Splink (at 100,000 profiles, 2.0 of the 2.5 s of u sampling
went to the email, phone and birth date distances).

`LevenshteinAtThresholds` here gives the same levels, labels and results as Splink's, but each
`levenshtein(l, r) <= k` condition is preceded by cheap conditions that every pair within k
edits meets; DuckDB evaluates the operands of an AND one after another on the rows still
true, so the distance is computed only where they all hold. With n the shorter length:

- the lengths differ by at most k (each edit changes the length by at most one);
- k = 1, h = n // 2: the first h characters are equal, or the last h are. One edit lies either
  after the first h characters of l or before its last h (the two parts do not overlap), and
  the part it misses is the same in r.
- k = 2, h = n // 3: the first h characters are equal, or the last h are, or the middle of l
  (between them) appears in r. If neither the first nor the last h survive, one edit lies in
  each, and with at most two edits the middle is untouched and contiguous in r.
- k > 2: the length condition only.

Lengths, prefixes and `contains` count characters (code points), as DuckDB's `levenshtein`
does. tests/unit/test_ml_levenshtein.py checks the conditions against the plain distance on
many pairs.
"""

from __future__ import annotations

from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl


def guarded_condition(left: str, right: str, threshold: int) -> str:
    """SQL true exactly when levenshtein(left, right) <= threshold, cheap when it is far."""
    shorter = f"least(length({left}), length({right}))"
    guards = [f"abs(length({left}) - length({right})) <= {threshold}"]
    if threshold in (1, 2):
        h = f"({shorter} // {threshold + 1})"
        ends = [
            f"left({left}, {h}) = left({right}, {h})",
            f"right({left}, {h}) = right({right}, {h})",
        ]
        if threshold == 2:
            ends.append(f"contains({right}, substr({left}, {h} + 1, length({left}) - 2 * {h}))")
        guards.append("(" + " OR ".join(ends) + ")")
    return " AND ".join([*guards, f"levenshtein({left}, {right}) <= {threshold}"])


class _GuardedLevenshteinLevel(cll.LevenshteinLevel):
    def create_sql(self, sql_dialect: Any) -> str:
        if sql_dialect.sql_dialect_str != "duckdb":
            return str(super().create_sql(sql_dialect))
        self.col_expression.sql_dialect = sql_dialect
        column = self.col_expression
        return guarded_condition(column.name_l, column.name_r, self.distance_threshold)


class LevenshteinAtThresholds(cl.LevenshteinAtThresholds):
    """Splink's comparison of the same name (same levels and labels), guarded on DuckDB."""

    def create_comparison_levels(self) -> list[Any]:
        return [
            cll.NullLevel(self.col_expression),
            cll.ExactMatchLevel(self.col_expression),
            *(_GuardedLevenshteinLevel(self.col_expression, t) for t in self.thresholds),
            cll.ElseLevel(),
        ]
