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
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

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


def _as_text(this: Any, value: Any = None) -> str:
    from pybars import Scope  # loaded by compile_template already: a dict lookup

    # `{{../this}}` resolves to pybars' Scope around the parent value; render the value.
    while isinstance(value, Scope):
        value = value.context
    return _text(value)


def _remove_extra_space(this: Any, options: Mapping[str, Any]) -> str:
    # A block's output is pybars' strlist (a list subclass): str() joins it.
    return " ".join(str(options["fn"](this)).split())


def _if_equals(this: Any, options: Mapping[str, Any], left: Any, right: Any) -> Any:
    branch = "fn" if _text(left) == _text(right) else "inverse"
    return options[branch](this)


_AS_TEXT = "as@text"
HELPERS: dict[str, Callable[..., Any]] = {
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


_lock = threading.Lock()
_compiler: Compiler | None = None
_cache: dict[str, Callable[..., Any]] = {}


def compile_template(source: str) -> Callable[..., Any]:
    """The compiled template for `source`; TemplateError when it is not valid."""
    compiled = _cache.get(source)
    if compiled is not None:
        return compiled
    rewritten = _rewrite(source)
    global _compiler
    with _lock:
        from pybars import Compiler, PybarsError

        if _compiler is None:
            _compiler = Compiler()
        try:
            compiled = _compiler.compile(rewritten)
        except PybarsError as exc:
            raise TemplateError(str(exc)) from None
    _cache[source] = compiled
    return compiled


def render(source: str, document: Mapping[str, Any]) -> str:
    """Render `source` against `{"_source": document}`; surrounding whitespace is dropped."""
    template = compile_template(source)
    from pybars import PybarsError  # imported by compile_template already: a dict lookup

    try:
        return str(template({"_source": document}, helpers=HELPERS)).strip()
    except PybarsError as exc:
        raise TemplateError(str(exc)) from None
