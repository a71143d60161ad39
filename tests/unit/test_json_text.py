"""Cutting a text of records into records (openprofiles.json_text): one JSON value, a JSON
array, or JSON lines; a text that is none of these is refused whole, with the parser's
position, instead of being cut into per-line fragments."""

from __future__ import annotations

import json

import pytest

from openprofiles.json_text import (
    JsonTextError,
    NotJsonText,
    load_json,
    split_json_records,
    split_json_text,
)

A, B, C = {"id": "1", "name": "Zoë"}, {"id": "2"}, {"id": "3"}


@pytest.mark.parametrize(
    ("text", "records"),
    [
        ("", []),
        ("\n  \n", []),
        (json.dumps([A, B], indent=2), [A, B]),
        (json.dumps(A, indent=2), [A]),
        ("\n".join(json.dumps(r) for r in (A, B, C)) + "\n", [A, B, C]),
        ("\r\n".join(json.dumps(r) for r in (A, B)), [A, B]),
        # U+2028 may stand unescaped in a JSON string: it does not end the line.
        (json.dumps({"note": "a\u2028b"}, ensure_ascii=False) + "\n" + json.dumps(B), None),
    ],
)
def test_json_values_and_json_lines(text: str, records: list[dict[str, str]] | None) -> None:
    got = [json.loads(raw) for raw in split_json_text(text)]
    assert got == (records if records is not None else [{"note": "a\u2028b"}, B])


@pytest.mark.parametrize("bad", [0, 1, 2])
def test_a_bad_json_line_fails_alone(bad: int) -> None:
    lines = [json.dumps(r) for r in (A, B, C)]
    lines[bad] = '{"id": "x", "email":'
    assert split_json_text("\n".join(lines)) == lines


def test_half_the_lines_bad_is_still_json_lines() -> None:
    lines = [json.dumps(A), "not json"]
    assert split_json_text("\n".join(lines)) == lines


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # A pretty-printed array with a missing comma: one failure at the parser's position,
        # not a "line 1 column 2" for each of its lines.
        ('[\n  {\n    "id": "1"\n    "email": "a@example.com"\n  },\n  {"id": "2"}\n]', "line 4"),
        # A pretty-printed array of one-line objects, cut short.
        ("[\n" + ",\n".join(json.dumps(r) for r in (A, B, C)) + ",\n", "line 5"),
        ("not json at all", "line 1 column 1"),
    ],
)
def test_neither_json_nor_json_lines(text: str, where: str) -> None:
    with pytest.raises(NotJsonText) as exc:
        split_json_text(text)
    assert where in exc.value.message
    assert exc.value.message.startswith(("Expecting", "Illegal", "Extra"))


def test_lines_that_all_start_an_object_are_json_lines_however_broken() -> None:
    # Broken records among good ones, one a line (a truncated export): each fails alone, with
    # the parser's reason, rather than the whole text.
    text = '{"id": "1",, "email": "a@example.com"}\n{"id": "2"\n{"id": "3"}'
    [(first, error_1), (second, error_2), (_, good)] = split_json_records(text)
    assert (first, second) == tuple(text.split("\n")[:2])
    assert isinstance(error_1, JsonTextError) and "line 1 column 12" in error_1.message
    assert isinstance(error_2, JsonTextError)
    assert good == {"id": "3"}


def test_lines_none_of_which_is_json_are_refused_whole() -> None:
    """Nothing in them says JSON lines (one truncated record was one record that failed, and
    POST /contact-records kept it): refused whole, with where parsing stopped."""
    for text in ('{"id": "2"', "{bad", '{"id": "1",, "x": 1}\n{"id": "2"'):
        with pytest.raises(NotJsonText, match="at line 1 column"):
            split_json_records(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, -" + "7" * 4301 + "]", "The text is not JSON: a number in it has more"),
        ('{"id": 1}\n{"n": ' + "7" * 5000 + "}", "The record is not valid JSON: a number in it"),
    ],
)
def test_a_number_with_too_many_digits_says_so_in_plain_words(text: str, message: str) -> None:
    try:
        records = split_json_records(text)
    except JsonTextError as exc:
        error = exc
    else:
        (error,) = [value for _, value in records if isinstance(value, JsonTextError)]
    assert error.message.startswith(message)
    assert "4300 digits" in error.message
    assert "sys." not in error.message


def test_a_number_too_large_for_a_float_is_refused_not_read_as_infinity() -> None:
    """`1e999` was read as infinity: an array's element written back as its record's text came
    out as `Infinity`, which is not JSON, and a profile field as the word "Infinity"."""
    with pytest.raises(JsonTextError) as refused:
        load_json('{"n": 1e999}', "The Object")
    assert refused.value.message == (
        "The Object is not valid JSON: a number is too large to be stored (beyond about "
        "1.8e308, infinite)."
    )
    with pytest.raises(JsonTextError):
        split_json_records('[{"n": -1e999}, {"n": 1}]')
    bad, good = split_json_records('{"n": 2e400}\n{"n": 1.5e308}')
    assert isinstance(bad[1], JsonTextError) and good[1] == {"n": 1.5e308}


def test_an_arrays_elements_are_cut_from_the_text_as_sent() -> None:
    text = ' [ {"a": 1.10} ,{"b":"\\u00e9"},\n  [1, 2], "x" ]\n'
    assert split_json_records(text) == [
        ('{"a": 1.10}', {"a": 1.1}),
        ('{"b":"\\u00e9"}', {"b": "\u00e9"}),
        ("[1, 2]", [1, 2]),
        ('"x"', "x"),
    ]
    assert split_json_records("[]") == []


@pytest.mark.parametrize("text", ["[1,]", "[1 2]", "[1] [2]", "[1", "[1]]"])
def test_a_broken_array_is_not_cut_into_elements(text: str) -> None:
    with pytest.raises(NotJsonText):
        split_json_records(text)


def _standard(text: str | bytes) -> object:
    """What Python's json reads: load_json reads valid JSON the same, however it parses it."""
    return json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"n": 18446744073709551616, "m": -9223372036854775809, "s": "x"}',  # beyond 64 bits
        '{"big": 1180591620717411303425}',  # 2**70 + 1: no float holds it
        '{"ok": 18446744073709551615, "neg": -9223372036854775808}',  # the 64-bit limits
        '{"f": [0.1, 1e-400, -0.0, 1.7976931348623157e308, 5e-324, 123456.789e-3]}',
        '{"name": "Zoë 李 \\u00e9 \\ud83d\\ude00", "nul": "\\u0000"}',
        '["' + "[" * 10 + '"]',  # brackets inside a string are not nesting
        "[" * 150 + "]" * 150,  # deep, within MAX_JSON_DEPTH
        b'\xef\xbb\xbf{"bom": 1}',  # UTF-8 with a byte-order mark, as json.loads takes it
        '{"a": 1}'.encode("utf-16"),  # UTF-16, by its byte-order mark
        '{"dup": 1, "dup": 2}',
    ],
)
def test_valid_json_is_read_as_the_standard_library_reads_it(text: str | bytes) -> None:
    document = load_json(text, "The Object")
    assert document == _standard(text)
    assert json.dumps(document) == json.dumps(_standard(text))  # int stays int, -0.0 stays


def test_floats_are_read_as_python_reads_them() -> None:
    import random

    rng = random.Random(2026)
    texts = [f"{rng.uniform(-1, 1):.17g}e{rng.randint(-330, 307)}" for _ in range(2_000)]
    texts += [repr(rng.random() * 10 ** rng.randint(-20, 20)) for _ in range(2_000)]
    document = load_json("[" + ",".join(texts) + "]", "The Object")
    assert document == [float(t) for t in texts]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"n": NaN}', "is not valid JSON: NaN is not a JSON value"),
        ('{"s": "\\ud800"}', "lone"),
        ("[" * 201 + "]" * 201, "nested too deeply"),
        ('{"n": 1e999}', "a number is too large to be stored"),
    ],
)
def test_what_json_does_not_have_is_refused_with_its_reason(text: str, message: str) -> None:
    with pytest.raises(JsonTextError) as refused:
        load_json(text, "The Object")
    assert message in refused.value.message
    with pytest.raises(JsonTextError) as refused_bytes:
        load_json(text.encode(), "The Object")
    assert refused_bytes.value.message == refused.value.message
