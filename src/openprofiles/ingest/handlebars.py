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
A path follows JSON only (`_resolve`): object members, array items by index (`-1`, `x` or an
index past the end is missing, as is a missing member), never a Python attribute or method,
and no helper calls what it is given. Every helper pybars has is replaced (`HELPERS`), so that
`{{else}}` works in `#unless`, `#with` and `#each`, and `#each` iterates arrays and objects only.
Blocks nest at most MAX_BLOCK_DEPTH deep. A render fails with TemplateError only (`render`).
The MAX_CACHED_TEMPLATES distinct templates used last are kept compiled; pybars' compiler is not
thread-safe, hence the lock.
pybars is imported on the first compile, not with this module: building its grammar takes about
half a second, which every CLI command and server start paid before, templates or not.

Two shapes are rendered without pybars (`_fast_renderer`): a lone path, `{{_source.a.b}}`, and a
path inside one `ifEquals` with a plain string literal, the built-in contact-record templates'
phone and email (`{{#ifEquals _source.CustomerEndpoint.Type "EMAIL_ADDRESS"}}{{_source.
CustomerEndpoint.Address}}{{/ifEquals}}`). Those two run for every contact record, and a pybars
render takes tens of microseconds, about a tenth of a record's whole ingestion. They resolve
paths as the pybars renders do (`_resolve`), so the output is the same to the character; the
tests render both ways.

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

import functools
import json
import re
import sys
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

# A long comment first: `{{!-- {{x}} --}}` may hold mustaches (group 1 and 2 are then None).
_MUSTACHE = re.compile(r"\{\{!--.*?--\}\}|\{\{\{(.*?)\}\}\}|\{\{(.*?)\}\}", re.DOTALL)
_PATH = re.compile(r"^(?:\.\./)*(?:@?[A-Za-z0-9_$-]+|this)(?:\.[A-Za-z0-9_$-]+)*$")
_LITERAL = re.compile(r'^(?:"[^"]*"|\'[^\']*\'|-?\d+(?:\.\d+)?|true|false|null)$')
_ARG = re.compile(r'"[^"]*"|\'[^\']*\'|\S+')

# The deepest nesting of blocks a template may have. Real templates nest two or three deep (an
# #if inside an #each inside a #with); 16 leaves room for any of them, while a template that is
# all nesting is refused with its reason rather than compiled, slowly, into code as deep.
MAX_BLOCK_DEPTH = 16
# What an escaped mustache (`\{{x}}`, rendered as the text `{{x}}`) is given to pybars as: a
# raw block, whose content pybars writes as it is (no helper has the name).
_RAW_OPEN, _RAW_CLOSE = "{{{{raw}}}}", "{{{{/raw}}}}"


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


def _plain(value: Any) -> Any:
    """The value a pybars Scope wraps (`{{this}}`, `{{../this}}`), else the value itself."""
    from pybars import Scope  # loaded by compile_template already: a dict lookup

    while isinstance(value, Scope):
        value = value.context
    return value


def _as_text(this: Any, value: Any = None) -> str:
    return _spend_chars(_text(_plain(value)))


def _if(this: Any, options: Mapping[str, Any], value: Any) -> Any:
    # pybars' `if` calls a callable value: none can be resolved (`_resolve`), and none is called.
    return options["fn" if _plain(value) else "inverse"](this)


def _unless(this: Any, options: Mapping[str, Any], value: Any) -> Any:
    # pybars' `unless` drops the {{else}} block.
    return options["inverse" if _plain(value) else "fn"](this)


def _with(this: Any, options: Mapping[str, Any], value: Any) -> Any:
    """`#with`: its block over the value, whose `..` is the enclosing context; a missing or
    empty value renders the {{else}} block, or nothing (pybars rendered the block against
    nothing: `{{city}}, {{zip}}` wrote a lone `,` that overwrote a good value)."""
    from pybars import Scope

    value = _plain(value)
    if not value:
        return options["inverse"](this)
    return options["fn"](Scope(value, this, options["root"]))


def _each(this: Any, options: Mapping[str, Any], value: Any) -> Any:
    """`#each` over a JSON array or object, each iteration counted against the render's budget;
    anything else (a string, a number: pybars iterated a string's characters) or an empty one
    renders the {{else}} block."""
    from pybars import Scope, strlist

    value = _plain(value)
    if isinstance(value, Mapping):
        items: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list | tuple):
        items = [(None, item) for item in value]
    else:
        items = []
    if not items:
        return options["inverse"](this)
    result = strlist()
    last = len(items) - 1
    for index, (key, item) in enumerate(items):
        _spend_step()
        scope = Scope(
            item, this, options["root"], index=index, key=key, first=index == 0, last=index == last
        )
        result.grow(options["fn"](scope))
    return result


def _remove_extra_space(this: Any, options: Mapping[str, Any]) -> str:
    # A block's output is pybars' strlist (a list subclass): str() joins it.
    return " ".join(str(options["fn"](this)).split())


def _if_equals(this: Any, options: Mapping[str, Any], left: Any, right: Any) -> Any:
    branch = "fn" if _text(_plain(left)) == _text(_plain(right)) else "inverse"
    return options[branch](this)


def _nothing(*_: Any, **__: Any) -> None:
    """pybars' own helpers the subset has no use for (`lookup`, `log`, and what it calls for a
    name that is no helper): `_rewrite` lets no template reach them, and were one to, it gets
    nothing rather than pybars' attribute lookups and calls."""
    return None


_AS_TEXT = "as@text"
# Every helper pybars has is replaced: its `if` and `blockHelperMissing` call what they are
# given, its `each` iterates a string, its `with` and `unless` ignore {{else}}.
HELPERS: dict[str, Callable[..., Any]] = {
    "if": _if,
    "unless": _unless,
    "with": _with,
    "each": _each,
    "removeExtraSpace": _remove_extra_space,
    "ifEquals": _if_equals,
    "lookup": _nothing,
    "log": _nothing,
    "helperMissing": _nothing,
    "blockHelperMissing": _nothing,
    _AS_TEXT: _as_text,
}


def _check_path(path: str, rooted: bool, where: str) -> None:
    if not _PATH.match(path):
        hint = "; index arrays with a dot, as in _source.items.0.id" if "[" in path else ""
        raise TemplateError(f"{where}: {path!r} is not a JSON path{hint}")
    if rooted and path != "_source" and not path.startswith("_source."):
        raise TemplateError(f"{where}: the path {path} must start with _source")


def _rewrite(source: str) -> str:
    """Check `source` against the subset and return it with plain expressions made unescaped,
    long comments dropped and escaped mustaches made raw text."""
    out: list[str] = []
    stack: list[str] = []
    position = 0

    def rooted() -> bool:
        return not any(name in _SCOPING_HELPERS for name in stack)

    for match in _MUSTACHE.finditer(source):
        text = source[position : match.start()]
        position = match.end()
        if text.endswith("\\\\"):
            text = text[:-1]  # `\\{{x}}` is a backslash, then x's value, as in Handlebars
        elif text.endswith("\\"):
            # `\{{x}}` is the text `{{x}}`, as in Handlebars.
            out.append(text[:-1] + _RAW_OPEN + match.group(0) + _RAW_CLOSE)
            continue
        out.append(text)
        triple, double = match.group(1), match.group(2)
        if triple is None and double is None:
            continue  # a long comment, which pybars does not know
        out.append(_rewrite_mustache(match.group(0), triple, double, stack, rooted()))
    out.append(source[position:])
    if stack:
        raise TemplateError(f"the block {{{{#{stack[-1]}}}}} is never closed")
    rest = _MUSTACHE.sub("", source)
    if "{{" in rest or "}}" in rest:
        raise TemplateError("unbalanced {{ or }}")
    return "".join(out)


def _rewrite_mustache(
    whole: str, triple: str | None, double: str | None, stack: list[str], rooted: bool
) -> str:
    """What `_rewrite` makes of one mustache `whole` (no comment), the blocks open around it
    in `stack` (kept up to date)."""
    body = (triple if triple is not None else double or "").strip().strip("~").strip()
    where = "{{" + body + "}}"
    if triple is not None:
        _check_path(body, rooted, where)
        return "{{{" + _AS_TEXT + " " + body + "}}}"
    if body.startswith("!"):
        pass  # a comment
    elif body.startswith("#"):
        _open_block(body, where, stack, rooted)
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
        _check_path(body, rooted, where)
        return "{{{" + _AS_TEXT + " " + body + "}}}"
    return whole


def _open_block(body: str, where: str, stack: list[str], rooted: bool) -> None:
    """Check `{{#name args}}` and push it on `stack`."""
    words = _ARG.findall(body[1:])
    if not words:
        raise TemplateError(f"{where}: a block needs the name of its helper, as in {{{{#if ...}}}}")
    name, *args = words
    if name not in BLOCK_HELPERS:
        raise TemplateError(
            f"{where}: the block helper {name} is not supported "
            f"(supported: {', '.join(sorted(BLOCK_HELPERS))})"
        )
    expected = {"removeExtraSpace": 0, "ifEquals": 2}.get(name, 1)
    if len(args) != expected:
        raise TemplateError(f"{where}: #{name} takes {expected} argument(s)")
    if args:
        _check_path(args[0], rooted, where)
    if name == "ifEquals" and not (_LITERAL.match(args[1]) or _PATH.match(args[1])):
        raise TemplateError(f"{where}: {args[1]} is neither a literal nor a path")
    if len(stack) >= MAX_BLOCK_DEPTH:
        raise TemplateError(
            f"{where}: blocks nest more than {MAX_BLOCK_DEPTH} deep; nest fewer of them"
        )
    stack.append(name)


# A renderer: the text of a template for one document (before the surrounding whitespace is
# dropped).
Renderer = Callable[[Mapping[str, Any]], str]

_lock = threading.Lock()
_compiler: Compiler | None = None
# The most compiled templates kept, the least recently used dropped first: a compiled template
# is some 30 KB of code, and object types come and go (2,000 distinct templates held 66 MB
# when nothing was dropped). A domain's live templates fit many times over.
MAX_CACHED_TEMPLATES = 1024

_FAST_PATH = r"(_source(?:\.[A-Za-z0-9_$-]+)+)"
_FAST_PLAIN = re.compile(rf"\s*\{{\{{{_FAST_PATH}\}}\}}\s*")
_FAST_IF_EQUALS = re.compile(
    rf'\s*\{{\{{#ifEquals {_FAST_PATH} "([A-Za-z0-9_ .@+-]*)"\}}\}}'
    rf"\{{\{{{_FAST_PATH}\}}\}}\{{\{{/ifEquals\}}\}}\s*"
)


@functools.lru_cache(maxsize=MAX_CACHED_TEMPLATES)
def compile_template(source: str) -> Renderer:
    """The renderer of `source`; TemplateError when it is not valid (no error is cached)."""
    rewritten = _rewrite(source)
    return _fast_renderer(source) or _pybars_renderer(rewritten)


def render(source: str, document: Mapping[str, Any]) -> str:
    """Render `source` against `{"_source": document}`; surrounding whitespace is dropped.
    Fails with TemplateError only: whatever else a render raised is a fault of this module, and
    the mapping dead-letters the record rather than failing the request."""
    try:
        return compile_template(source)(document).strip()
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - see above
        raise _fault(exc) from None


def render_with_pybars(source: str, document: Mapping[str, Any]) -> str:
    """`render` always through pybars: what the fast shapes are checked against."""
    try:
        return _pybars_renderer(_rewrite(source))(document).strip()
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - see `render`
        raise _fault(exc) from None


def _fault(exc: Exception) -> TemplateError:
    return TemplateError(f"the template could not be rendered ({type(exc).__name__})")


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
        except Exception as exc:  # noqa: BLE001 - pybars' parser, on what `_rewrite` let by
            raise TemplateError(f"it could not be compiled ({type(exc).__name__})") from None
    # pybars registers each template as a module in sys.modules, for good: the cache could drop
    # none. The template keeps its module's namespace (its globals) all the same.
    sys.modules.pop(template.__module__, None)
    # Every path the template holds is resolved by its module's `resolve`: ours, which follows
    # JSON members only (`_resolve`).
    template.__globals__["resolve"] = _resolve

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
        return lambda document: _text(_resolve({"_source": document}, *path))
    if_equals = _FAST_IF_EQUALS.fullmatch(source)
    if if_equals is not None:
        test, literal, shown = if_equals.group(1).split("."), if_equals.group(2), if_equals.group(3)
        shown_path = shown.split(".")

        def renderer(document: Mapping[str, Any]) -> str:
            root = {"_source": document}
            if _text(_resolve(root, *test)) != literal:
                return ""
            return _text(_resolve(root, *shown_path))

        return renderer
    return None


# What a pybars Scope's data variables (`{{@index}}`, `{{../x}}`, `{{@root._source.id}}`) name.
_SCOPE_DATA = {
    "@root": "root",
    "@_parent": "parent",
    "@index": "index",
    "@key": "key",
    "@first": "first",
    "@last": "last",
}


def _resolve(context: Any, *segments: str) -> Any:
    """The value at a path (pybars' segments: `''` for a `.` or `this`, `@_parent` for `../`),
    or None. Only JSON is followed: an object's members and an array's items by index (and its
    `length`, as in Handlebars). pybars' own `resolve` fell back to Python attributes and
    methods, which `#if` then called: `_source.sep.join` ran `",".join(...)` without end, and
    `_source.name.title` rendered a bound method."""
    for segment in segments:
        if context is None:
            return None
        if not segment:
            continue
        # Parsed JSON: the common case first.
        context = context.get(segment) if type(context) is dict else _member(context, segment)
    return context


def _member(value: Any, name: str) -> Any:
    if type(value) is dict or isinstance(value, Mapping):
        return value.get(name)
    if isinstance(value, list | tuple):
        if name == "length":
            return len(value)
        # A missing item, as a missing member: no negative index (`-1` is no item but the
        # last), no `x`, no index past the end.
        if name.isascii() and name.isdigit() and int(name) < len(value):
            return value[int(name)]
        return None
    if isinstance(value, str | int | float):
        return None
    # Only pybars' renders (not the fast shapes') get here: pybars is loaded.
    from pybars import Scope

    if isinstance(value, Scope):
        data = _SCOPE_DATA.get(name)
        if data is not None:
            return getattr(value, data)
        return value.context if name == "this" else _member(value.context, name)
    return None
