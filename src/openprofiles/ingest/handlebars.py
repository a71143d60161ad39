"""The Handlebars subset a field `Source` may use (spec §1.2), on top of pybars3.

Supported: `{{_source.a.b}}` (arrays by index: `{{_source.items.0.id}}`), the block helpers
`#if`, `#unless`, `#each`, `#with` (with `{{else}}`), comments, and `#removeExtraSpace`, which
collapses runs of whitespace in what it encloses. OpenProfiles adds one block helper,
`{{#ifEquals PATH "literal"}}...{{else}}...{{/ifEquals}}`: the built-in contact-record
templates need it to take `CustomerEndpoint.Address` only when `CustomerEndpoint.Type` says it is
an email address or a phone number (spec §2.3). It is accepted in every definition so that a
template fetched with GetProfileObjectTypeTemplate can be put back as an object type.

Values are data, not HTML, so `{{x}}` is rendered unescaped. A value renders as the text a
mapping user expects: a string as is, a number as written by JSON, a boolean as `true`/`false`,
null or a missing path as nothing, and a JSON object or array as compact JSON (`{"q":1}`,
`["p",{"q":1}]`, non-ASCII kept, as the mapping turns JSON values into text elsewhere), never
Python's repr. pybars would use str(), so every `{{x}}` and `{{{x}}}` is rewritten to
`{{{as@text x}}}`, a call of an internal helper whose name no path can take (`@` only starts a
path).
Outside `#each`/`#with` every path must start at `_source`, the only root AWS supports.
Each distinct template is compiled once; pybars' compiler is not thread-safe, hence the lock.
pybars is imported on the first compile, not with this module: building its grammar takes about
half a second, which every CLI command and server start paid before, templates or not.

Two shapes are rendered without pybars (`_fast_renderer`): a lone path, `{{_source.a.b}}`, and a
path inside one `ifEquals` with a plain string literal, the built-in contact-record templates'
phone and email (`{{#ifEquals _source.CustomerEndpoint.Type "EMAIL_ADDRESS"}}{{_source.
CustomerEndpoint.Address}}{{/ifEquals}}`). Those two run for every contact record, and a pybars
render takes tens of microseconds, about a tenth of a record's whole ingestion. They resolve
paths as pybars does (`_resolve` follows its `resolve` and `pick`), so the output is the same
to the character; the tests render both ways.

A pybars render is bounded (`_Budget`): at most MAX_RENDER_STEPS iterations of `#each` blocks
for one record, all its fields' templates together (`record_budget`, held by the mapping while
it maps a record: a budget for each field allowed 250 times as much to an object type of 250
such fields), and MAX_RENDER_CHARS characters of values for each field. A short template can
do a lot of work: `{{#each _source.a}}{{#each ../_source.a}}x{{/each}}{{/each}}` over an array
of 5,000 items is 25 million iterations, which held a 15 KB PutProfileObject (and the writer,
and every other request) for half a minute. Past the bound the render fails (TemplateError),
and the record is dead-lettered saying why. Literal text is not counted: a template has at
most 1,000 characters, so the iterations bound it to about 10 MB a record.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from openprofiles.ingest import MAX_OBJECT_CHARS

if TYPE_CHECKING:
    from pybars import Compiler

BLOCK_HELPERS = frozenset({"if", "unless", "each", "with", "removeExtraSpace", "ifEquals"})
# Block helpers whose body sees a new context (paths in it are relative to that context).
_SCOPING_HELPERS = frozenset({"each", "with"})

_MUSTACHE = re.compile(r"\{\{\{(.*?)\}\}\}|\{\{(.*?)\}\}", re.DOTALL)
_PATH = re.compile(r"^(?:\.\./)*(?:@?[A-Za-z0-9_$-]+|this)(?:\.[A-Za-z0-9_$-]+)*$")
_LITERAL = re.compile(r'^(?:"[^"]*"|\'[^\']*\'|-?\d+(?:\.\d+)?|true|false|null)$')
_ARG = re.compile(r'"[^"]*"|\'[^\']*\'|\S+')


class TemplateError(ValueError):
    """A Source template outside the supported Handlebars subset, or malformed."""


def is_template(source: str) -> bool:
    return "{{" in source


def _text(value: Any) -> str:
    """How a value from the document renders (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


# The most `#each` iterations one render may take, all blocks together: a template that loops
# over a record's longest arrays once, or nests over a short one, stays far below it.
MAX_RENDER_STEPS = 10_000
# The most characters of values one field's render may write: no field can hold more than the
# object it comes from.
MAX_RENDER_CHARS = MAX_OBJECT_CHARS


class _Budget:
    """What is left of a record's bound (the module docstring): its iterations, shared by all
    its fields' renders, and the characters of the render under way (one field holds at most
    what its object holds, but several fields may each hold as much: a shared count refused a
    100 KB record with three such fields)."""

    __slots__ = ("chars", "steps")

    def __init__(self) -> None:
        self.steps = MAX_RENDER_STEPS
        self.chars = MAX_RENDER_CHARS


# The budget of the record being mapped in this thread (or task), or of a render outside one;
# None outside both.
_budget: ContextVar[_Budget | None] = ContextVar("handlebars_budget", default=None)


class record_budget:  # noqa: N801 - used as a function: `with record_budget():`
    """One budget for every template rendered while it is held: one record's fields (the
    module docstring). Held already (a record mapped inside another's mapping), it adds none."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _budget.set(_Budget()) if _budget.get() is None else None

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            _budget.reset(self._token)


def _spend_step() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.steps -= 1
        if budget.steps < 0:
            raise TemplateError(
                f"it takes more than {MAX_RENDER_STEPS:,} #each iterations for this record "
                "(an #each over a long array, or one #each inside another); map fewer items"
            )


def _spend_chars(text: str) -> str:
    budget = _budget.get()
    if budget is not None:
        budget.chars -= len(text)
        if budget.chars < 0:
            raise TemplateError(
                f"it writes more than {MAX_RENDER_CHARS:,} characters of values for this record"
            )
    return text


def _as_text(this: Any, value: Any = None) -> str:
    from pybars import Scope  # loaded by compile_template already: a dict lookup

    # `{{../this}}` resolves to pybars' Scope around the parent value; render the value.
    while isinstance(value, Scope):
        value = value.context
    return _spend_chars(_text(value))


def _each(this: Any, options: Mapping[str, Any], context: Any) -> Any:
    """pybars' `#each`, each iteration counted against the render's budget."""
    from pybars._compiler import _each as pybars_each

    body = options["fn"]

    def counted(scope: Any) -> Any:
        _spend_step()
        return body(scope)

    return pybars_each(this, {**options, "fn": counted}, context)


def _remove_extra_space(this: Any, options: Mapping[str, Any]) -> str:
    # A block's output is pybars' strlist (a list subclass): str() joins it.
    return " ".join(str(options["fn"](this)).split())


def _if_equals(this: Any, options: Mapping[str, Any], left: Any, right: Any) -> Any:
    branch = "fn" if _text(left) == _text(right) else "inverse"
    return options[branch](this)


_AS_TEXT = "as@text"
HELPERS: dict[str, Callable[..., Any]] = {
    "each": _each,
    "removeExtraSpace": _remove_extra_space,
    "ifEquals": _if_equals,
    _AS_TEXT: _as_text,
}


def _check_path(path: str, rooted: bool, where: str) -> None:
    if not _PATH.match(path):
        hint = "; index arrays with a dot, as in _source.items.0.id" if "[" in path else ""
        raise TemplateError(f"{where}: {path!r} is not a JSON path{hint}")
    if rooted and path != "_source" and not path.startswith("_source."):
        raise TemplateError(f"{where}: the path {path} must start with _source")


def _rewrite(source: str) -> str:
    """Check `source` against the subset and return it with plain expressions made unescaped."""
    out: list[str] = []
    stack: list[str] = []
    position = 0

    def rooted() -> bool:
        return not any(name in _SCOPING_HELPERS for name in stack)

    for match in _MUSTACHE.finditer(source):
        out.append(source[position : match.start()])
        position = match.end()
        triple, double = match.group(1), match.group(2)
        body = (triple if triple is not None else double).strip().strip("~").strip()
        where = "{{" + body + "}}"
        if triple is not None:
            _check_path(body, rooted(), where)
            out.append("{{{" + _AS_TEXT + " " + body + "}}}")
            continue
        if body.startswith("!"):
            out.append(match.group(0))
            continue
        if body.startswith("#"):
            name, *args = _ARG.findall(body[1:])
            if name not in BLOCK_HELPERS:
                raise TemplateError(
                    f"{where}: the block helper {name} is not supported "
                    f"(supported: {', '.join(sorted(BLOCK_HELPERS))})"
                )
            expected = {"removeExtraSpace": 0, "ifEquals": 2}.get(name, 1)
            if len(args) != expected:
                raise TemplateError(f"{where}: #{name} takes {expected} argument(s)")
            if args:
                _check_path(args[0], rooted(), where)
            if name == "ifEquals" and not (_LITERAL.match(args[1]) or _PATH.match(args[1])):
                raise TemplateError(f"{where}: {args[1]} is neither a literal nor a path")
            stack.append(name)
        elif body.startswith("/"):
            name = body[1:].strip()
            if not stack:
                raise TemplateError(f"{where} closes a block that was never opened")
            if stack[-1] != name:
                raise TemplateError(f"{where} closes {{{{#{stack[-1]}}}}}: blocks must nest")
            stack.pop()
        elif body == "else":
            if not stack:
                raise TemplateError("{{else}} outside of a block")
        elif body[:1] in ("^", ">", "&"):
            raise TemplateError(f"{where}: partials and inverted sections are not supported")
        else:
            if len(_ARG.findall(body)) != 1:
                raise TemplateError(
                    f"{where}: only paths can be rendered; helpers other than the block "
                    f"helpers {', '.join(sorted(BLOCK_HELPERS))} are not supported"
                )
            _check_path(body, rooted(), where)
            out.append("{{{" + _AS_TEXT + " " + body + "}}}")
            continue
        out.append(match.group(0))
    out.append(source[position:])
    if stack:
        raise TemplateError(f"the block {{{{#{stack[-1]}}}}} is never closed")
    rest = _MUSTACHE.sub("", source)
    if "{{" in rest or "}}" in rest:
        raise TemplateError("unbalanced {{ or }}")
    return "".join(out)


# A renderer: the text of a template for one document (before the surrounding whitespace is
# dropped).
Renderer = Callable[[Mapping[str, Any]], str]

_lock = threading.Lock()
_compiler: Compiler | None = None
_cache: dict[str, Renderer] = {}

_FAST_PATH = r"(_source(?:\.[A-Za-z0-9_$-]+)+)"
_FAST_PLAIN = re.compile(rf"\s*\{{\{{{_FAST_PATH}\}}\}}\s*")
_FAST_IF_EQUALS = re.compile(
    rf'\s*\{{\{{#ifEquals {_FAST_PATH} "([A-Za-z0-9_ .@+-]*)"\}}\}}'
    rf"\{{\{{{_FAST_PATH}\}}\}}\{{\{{/ifEquals\}}\}}\s*"
)


def compile_template(source: str) -> Renderer:
    """The renderer of `source`; TemplateError when it is not valid."""
    renderer = _cache.get(source)
    if renderer is not None:
        return renderer
    rewritten = _rewrite(source)
    renderer = _fast_renderer(source) or _pybars_renderer(rewritten)
    _cache[source] = renderer
    return renderer


def render(source: str, document: Mapping[str, Any]) -> str:
    """Render `source` against `{"_source": document}`; surrounding whitespace is dropped."""
    return compile_template(source)(document).strip()


def render_with_pybars(source: str, document: Mapping[str, Any]) -> str:
    """`render` always through pybars: what the fast shapes are checked against."""
    return _pybars_renderer(_rewrite(source))(document).strip()


def _pybars_renderer(rewritten: str) -> Renderer:
    global _compiler
    with _lock:
        from pybars import Compiler, PybarsError

        if _compiler is None:
            _compiler = Compiler()
        try:
            template = _compiler.compile(rewritten)
        except PybarsError as exc:
            raise TemplateError(str(exc)) from None

    def renderer(document: Mapping[str, Any]) -> str:
        # The record's budget of iterations when its mapping holds one, else this render's own;
        # its characters this render's own (`_Budget`).
        with record_budget():
            budget = _budget.get()
            assert budget is not None
            budget.chars = MAX_RENDER_CHARS
            try:
                return str(template({"_source": document}, helpers=HELPERS))
            except PybarsError as exc:
                raise TemplateError(str(exc)) from None

    return renderer


def _fast_renderer(source: str) -> Renderer | None:
    """A renderer without pybars for the shapes it covers (see the module docstring)."""
    plain = _FAST_PLAIN.fullmatch(source)
    if plain is not None:
        path = plain.group(1).split(".")
        return lambda document: _text(_resolve({"_source": document}, path))
    if_equals = _FAST_IF_EQUALS.fullmatch(source)
    if if_equals is not None:
        test, literal, shown = if_equals.group(1).split("."), if_equals.group(2), if_equals.group(3)
        shown_path = shown.split(".")

        def renderer(document: Mapping[str, Any]) -> str:
            root = {"_source": document}
            if _text(_resolve(root, test)) != literal:
                return ""
            return _text(_resolve(root, shown_path))

        return renderer
    return None


def _resolve(context: Any, segments: list[str]) -> Any:
    """pybars' `resolve` of a path without `this`, `..` or `@` (what the fast shapes allow), on
    a context that is no pybars Scope: its quirks (`length` of a list, an index that is no
    number or out of range raising) included."""
    for segment in segments:
        if context is None:
            return None
        if type(context) in (list, tuple):
            if segment == "length":
                return len(context)
            context = context[int(segment)]
        else:
            context = _pick(context, segment)
    return context


def _pick(context: Any, name: str) -> Any:
    """pybars' `pick`."""
    try:
        return context[name]
    except (KeyError, TypeError, AttributeError):
        if hasattr(context, name):
            return getattr(context, name)
        if hasattr(context, "get"):
            return context.get(name)
        return None
