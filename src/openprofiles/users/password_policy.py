"""What a new web password must be: the one policy every place that sets one applies (a user
created by an administrator or with `openprofiles users create`, the first-run admin, a new
password set by an administrator or `openprofiles users set-password`, a user changing their
own), through users.service.check_password.

It follows NIST SP 800-63B (§5.1.1.2, memorized secrets): a length floor and a generous ceiling,
no composition rules (they push people to "Password1!"), and a refusal of passwords that are
commonly used, found in breaches, or built from the context (the username, this service's
name). The commonly used passwords are zxcvbn's list (a PyPI package, MIT): the 30,000 most
frequent passwords of public breach corpora, the list its strength estimator ranks guesses by.
Only the list is used, not the estimator: its score is a guess-count heuristic whose threshold
would be ours to defend, while "it is on the list attackers try first" needs no defending.
"""

from __future__ import annotations

import functools
import re

# NIST SP 800-63B's floor for a secret the user chooses. Not raised to 12: the floor matters
# against offline cracking of a stolen hash, which Argon2id already makes slow, and against
# online guessing, which the sign-in throttle (users.throttle) bounds to a few guesses an hour
# per name; what actually gets guessed is the common password, which the list below refuses at
# any length. A longer pass phrase is welcome up to MAX_LENGTH.
MIN_LENGTH = 8
# Generous (NIST asks for at least 64), yet small enough that no form makes Argon2 hash
# megabytes: a pass phrase of several sentences fits.
MAX_LENGTH = 256
# A name part shorter than this is not looked for inside a password, only compared with it whole:
# a short name is inside countless passwords by chance ("ana" in "banana"; a username may be one
# character). A short name with digits added ("bob2024") is on the list of common passwords.
MIN_NAME_PART = 4
# Context-specific words (NIST): the service's own name.
SERVICE_NAMES = ("openprofiles",)
# What people add to a listed password to meet a composition rule ("monkey2024!"): taken off
# before the list is looked at a second time, when at least MIN_STEM characters are left.
_DECORATION = re.compile(r"[\d\W_]+$")
MIN_STEM = 3

TOO_COMMON = (
    "This password is one of the most commonly used (attackers try those first). Choose "
    "another: a few unrelated words are strong and easy to remember."
)


@functools.cache
def _common() -> frozenset[str]:
    """The commonly used passwords, lower case. Loaded on first use: the list is 30,000 words,
    and most commands never set a password."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def _stem(folded: str) -> str:
    """`folded` with the digits and symbols at its end taken off ("monkey2024!": "monkey")."""
    return _DECORATION.sub("", folded)


def is_common(password: str) -> bool:
    """Whether `password`, in any case and with trailing digits and symbols taken off, is on
    the list of commonly used passwords."""
    common = _common()
    folded = password.lower()
    stem = _stem(folded)
    return folded in common or (len(stem) >= MIN_STEM and stem in common)


def _name_parts(username: str) -> set[str]:
    """The parts of a username a password must not contain: the name, and the local part of an
    e-mail address (alice of alice@example.com), lower case."""
    name = username.lower()
    parts = {name, name.partition("@")[0]}
    return {part for part in parts if part}


def password_problem(password: str, *, username: str) -> str | None:
    """What is wrong with `password` as `username`'s new password (a sentence to show), or None
    when it may be used."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if not password.strip():
        return "Use a password that is not only spaces."
    if len(set(password)) == 1:  # "aaaaaaaa": NIST names repeated characters
        return "Use a password that is not one character repeated."
    folded = password.lower()
    stem = _stem(folded)
    for part in _name_parts(username):
        if part in (folded, stem) or (len(part) >= MIN_NAME_PART and part in folded):
            return "Use a password that is not the username and does not contain it."
    if any(name in folded for name in SERVICE_NAMES):
        return "Use a password that does not contain the name of this service."
    if is_common(password):
        return TOO_COMMON
    return None
