"""JSON text from outside: parsing it strictly, and cutting a text of records into records.

Every way records come in (the API, PutProfileObject's Object, contact-record bodies and files,
flow items, object files) reads JSON through here, so they agree on what is JSON and on where
one record ends.

Strict parsing (`load_json`) refuses what Python's json accepts but JSON does not have, or what
no later layer can store: `NaN`/`Infinity`, a number too large for a float (`1e999`, which
would be read as infinity), a lone UTF-16 surrogate (`"\\ud800"`, which no UTF-8
encoder or database accepts), and arrays or objects nested more than MAX_JSON_DEPTH deep (which
would overflow the recursion of code that walks the document). Its error says what and where
(member names only, never values).

Cutting (`split_json_records`): a text is one JSON value (an array gives its elements, each
as its text stands in the array) or JSON lines (one value per line). A text that does not parse
as a whole is JSON lines when at least one of its non-empty lines parses on its own and every
one starts an object, or when at least half of them parse on their own — then a bad line fails
alone and the others are records. (A text of one line that does not parse, a truncated record
say, is not JSON lines.) A JSON
document broken somewhere never comes near that: its lines open or close values (`[`, `{`,
`"id": 1,`, `},`), and at most the last element of an array stands alone on its line. Anything
else is refused whole (`NotJsonText`) with the parser's message and position, rather than cut
into meaningless per-line fragments.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import orjson

from openprofiles import json_codec

# Real records nest a few levels; a few hundred leaves room for any of them while staying well
# inside Python's recursion limit for the code that walks parsed documents afterwards.
MAX_JSON_DEPTH = 200
# After parsing, every surrogate code point left in a string is unpaired (pairs become one
# character). The text can only hold one as an escape (\\ud800) or raw (bytes decoded with
# surrogatepass, as json.loads does): when the text has neither, no string needs checking.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_HINT = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")


class JsonTextError(ValueError):
    """Text that is not (strict, storable) JSON; `message` is a sentence saying why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotJsonText(JsonTextError):
    """A text of records that is neither one JSON value nor JSON lines; `message` says where
    parsing it as one JSON value stopped, and why (the parser's message, line and column)."""

    def __init__(self, error: json.JSONDecodeError) -> None:
        super().__init__(f"{error.msg} at line {error.lineno} column {error.colno}")


class _NotJson(ValueError):
    """A constant (NaN, Infinity, -Infinity) that Python's json accepts but JSON does not have."""


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value (JSON numbers cannot be NaN or infinite)")


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or an exponent, as Python's json reads it, unless it is too
    large for a float: `1e999` would be read as infinity, which no JSON text can hold again (an
    array's element written back as its record's text came out as `Infinity`)."""
    value = float(text)
    if math.isinf(value):
        # Not the number itself: a value is personal data until known otherwise.
        raise _NotJson("a number is too large to be stored (beyond about 1.8e308, infinite)")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
# What JSON counts as whitespace between values (json.decoder.WHITESPACE's set).
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def load_json(text: str | bytes, what: str) -> Any:
    """Parse strict JSON text; JsonTextError naming `what` ("The request body") when it is not.

    Rejects what json.loads lets through but is not JSON, or not storable: NaN and Infinity,
    numbers too large for a float, lone surrogates, and nesting deeper than MAX_JSON_DEPTH.
    """
    document = _fast_load(text)
    if document is not _NOT_FAST:
        return document
    try:
        # Bytes are decoded as json.loads decodes them (UTF-8, or UTF-16/32 by their BOM).
        decoded = (
            text.decode(json.detect_encoding(text), "surrogatepass")
            if isinstance(text, bytes)
            else text
        )
        document = _DECODER.decode(decoded)
    except _NotJson as exc:
        raise JsonTextError(f"{what} is not valid JSON: {exc}.") from None
    except RecursionError:
        raise JsonTextError(_too_deep(what)) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise JsonTextError(f"{what} could not be parsed as JSON: {_parse_error(exc)}.") from None
    # Walking the whole document costs; skip it when the text rules both problems out.
    deep = may_nest_too_deep(decoded)
    surrogates = _SURROGATE_HINT.search(decoded) is not None
    if deep or surrogates:
        _check_document(document, what, depth=deep, strings=surrogates)
    return document


# A text load_json need not parse with json's decoder (_fast_load's answer otherwise).
_NOT_FAST: Any = object()


def _fast_load(text: str | bytes) -> Any:
    """`text` parsed by orjson, several times faster than json's decoder (whose float hook runs
    in Python, per number), when orjson reads it as load_json would: else _NOT_FAST, and the
    standard path decides, with its messages. orjson refuses what load_json refuses (NaN and
    Infinity, a number beyond a float, a lone surrogate, escaped or raw: then not UTF-8) and
    some JSON it would accept (a byte-order mark, UTF-16). What orjson would read differently is
    ruled out first: an integer beyond 64 bits (read as a float: json_codec) and nesting deeper
    than MAX_JSON_DEPTH (orjson allows 1,024 levels)."""
    if json_codec.may_hold_big_integer(text) or may_nest_too_deep(text):
        return _NOT_FAST
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _NOT_FAST


def may_nest_too_deep(text: str | bytes) -> bool:
    """Whether the JSON `text` has enough brackets to nest deeper than MAX_JSON_DEPTH: when it
    has not, its value need not be walked (`check_depth`)."""
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{") > MAX_JSON_DEPTH
    return text.count("[") + text.count("{") > MAX_JSON_DEPTH


def check_depth(document: Any, what: str) -> None:
    """JsonTextError ("`what` is nested too deeply ...", as load_json says it) when the parsed
    `document` nests arrays and objects deeper than MAX_JSON_DEPTH; walked without recursion."""
    _check_document(document, what, depth=True, strings=False)


def has_lone_surrogate(text: str) -> bool:
    """Whether a parsed string holds a lone surrogate (so cannot be encoded as UTF-8)."""
    return not text.isascii() and _LONE_SURROGATE.search(text) is not None


def split_json_records(text: str) -> list[tuple[str, Any]]:
    """(raw JSON text, parsed value) of every record of `text`, in order: the elements of a JSON
    array, a JSON value that is not an array, or the non-empty lines of JSON lines — where a
    line that is not JSON has the JsonTextError saying so in place of its value. NotJsonText
    when the text is none of these. Values are parsed without the NaN/Infinity constants but
    not checked for surrogates or depth: each caller decides what such a record becomes."""
    elements = _array_elements(text)
    if elements is not None:
        return elements
    try:
        whole = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        error = exc
    else:
        # Not an array: `_array_elements` reads every array that parses whole.
        return [(text.strip(), whole)]
    # Lines end at "\n" only: str.splitlines would also cut at U+2028 and other characters that
    # JSON strings may hold as they are.
    lines = [stripped for line in text.split("\n") if (stripped := line.strip())]
    parsed = [_line(line) for line in lines]
    records = sum(not isinstance(value, JsonTextError) for _, value in parsed)
    # No line JSON (one line that is not, say, a truncated record): nothing says it is JSON
    # lines, and nothing of it is a record.
    if not lines or (
        records and (all(line.startswith("{") for line in lines) or records * 2 >= len(lines))
    ):
        return parsed
    if isinstance(error, json.JSONDecodeError):
        raise NotJsonText(error)
    if isinstance(error, RecursionError):
        raise JsonTextError("The text is not JSON that can be read: it is nested too deeply.")
    raise JsonTextError(f"The text is not JSON: {_parse_error(error)}.")


def _array_elements(text: str) -> list[tuple[str, Any]] | None:
    """(raw text, value) of each element of `text` when it is one JSON array, else None (not an
    array, or not JSON: split_json_records then parses it whole, for its error or its lines).

    Each element's text is cut from `text` as sent, as a line of JSON lines is: writing the
    parsed value again would store another text than the sender's (1.10 as 1.1, "\\u00e9" as
    "é", other spacing). One pass of the parser over the text, an element at a time."""
    at = _skip_whitespace(text, 0)
    if not text.startswith("[", at):
        return None
    at = _skip_whitespace(text, at + 1)
    elements: list[tuple[str, Any]] = []
    if text.startswith("]", at):
        end = at + 1
    else:
        while True:
            try:
                value, end = _DECODER.raw_decode(text, at)
            except (ValueError, RecursionError):
                return None
            elements.append((text[at:end], value))
            at = _skip_whitespace(text, end)
            if text.startswith("]", at):
                end = at + 1
                break
            if not text.startswith(",", at):
                return None
            at = _skip_whitespace(text, at + 1)
    if _skip_whitespace(text, end) != len(text):
        return None  # more after the array: not one JSON value
    return elements


def _skip_whitespace(text: str, at: int) -> int:
    """Where the JSON whitespace starting at `at` ends."""
    match = _WHITESPACE.match(text, at)
    return match.end() if match else at


def split_json_text(text: str) -> list[str]:
    """The raw JSON text of every record of `text` (see split_json_records)."""
    return [raw for raw, _ in split_json_records(text)]


def _line(line: str) -> tuple[str, Any]:
    try:
        return line, decode_record(line)
    except JsonTextError as exc:
        return line, exc


def decode_record(text: str) -> Any:
    """One record's JSON text (a line of JSON lines, an array's element) parsed as
    split_json_records parses each: without the NaN/Infinity constants, not checked for
    surrogates or depth. JsonTextError saying why when it is not JSON."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise JsonTextError(_too_deep("The record")) from None
    except ValueError as exc:
        raise JsonTextError(f"The record is not valid JSON: {_parse_error(exc)}.") from None


def _parse_error(exc: ValueError) -> str:
    """What the parser's error says of the text, in words for the sender of the text."""
    # The decoder's own errors are JSONDecodeError (or UnicodeDecodeError for the bytes); a
    # plain ValueError is Python's cap on the digits of an integer (CVE-2020-10735), whose text
    # tells the reader to call sys.set_int_max_str_digits(), advice for the server, not the
    # client. (A plain ValueError from the constants is caught before, as _NotJson.)
    if type(exc) is ValueError:
        return f"a number in it has more than {sys.get_int_max_str_digits()} digits"
    return str(exc)


def _too_deep(what: str) -> str:
    return (
        f"{what} is nested too deeply: JSON arrays and objects may be nested at most "
        f"{MAX_JSON_DEPTH} levels deep."
    )


def _check_document(document: Any, what: str, *, depth: bool, strings: bool) -> None:
    """JsonTextError if `document` nests deeper than MAX_JSON_DEPTH or has a lone surrogate.

    Level by level, with no recursion (the document may be as deep as json.loads allows) and,
    as most documents pass, no paths: the strings are gathered and searched at once, and only a
    failing document is walked again to say where.
    """
    level: list[Any] = [document]
    texts: list[str] = [document] if isinstance(document, str) else []
    nesting = 0
    while level:
        nesting += 1
        if depth and nesting > MAX_JSON_DEPTH:
            raise JsonTextError(_too_deep(what))
        below: list[Any] = []
        for node in level:
            if type(node) is dict:
                if strings:
                    texts.extend(node)
                values: Any = node.values()
            elif type(node) is list:
                values = node
            else:
                continue
            for value in values:
                kind = type(value)
                if kind is dict or kind is list:
                    below.append(value)
                elif strings and kind is str:
                    texts.append(value)
        level = below
    if strings and _LONE_SURROGATE.search("".join(texts)):
        raise JsonTextError(_lone_surrogate(what, *_find_lone_surrogate(document)))


def _find_lone_surrogate(document: Any) -> tuple[str, tuple[str | int, ...]]:
    """(what holds it, path) of the first lone surrogate of a document known to have one."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _LONE_SURROGATE.search(node):
                return "the string", path
            continue
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in children:
            if isinstance(key, str) and _LONE_SURROGATE.search(key):
                return "the member name", (*path, key)
            if isinstance(child, dict | list | str):
                stack.append((child, (*path, key)))
    raise AssertionError("no lone surrogate found")


def _lone_surrogate(what: str, where: str, path: tuple[str | int, ...]) -> str:
    # The path names members, not values; a surrogate in it is shown escaped (\\udc80), as
    # the error response must itself be valid UTF-8.
    shown = ".".join(str(p) for p in path).encode("utf-8", "backslashreplace").decode("utf-8")
    at = f"at {shown}" if path else "at the top level"
    return (
        f"{what} is not valid Unicode JSON text: {where} {at} contains a lone surrogate "
        "(a \\uD800-\\uDFFF escape without its pair)."
    )
