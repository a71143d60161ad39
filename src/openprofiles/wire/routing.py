"""Maps an HTTP method and raw path to a model operation and its URI labels.

The route table is built from every operation's `http.method` and `http.requestUri` in the
botocore model. Paths are matched segment by segment on the RAW (still percent-encoded) path
and each segment is decoded only after splitting, because labels such as TagResource's
`{resourceArn}` carry an encoded '/' (`arn%3Aaws%3Aprofile%3A...%3Adomains%2Fname`).

A path that names an operation but leaves one of its labels empty is a BadRequest, not another
operation: botocore sends GetProfileObjectType(ObjectTypeName='') as `GET
/domains/d/object-types/`, which with its trailing slash dropped would be
ListProfileObjectTypes, answered as if it were the Get. No route of the model ends in '/', so
one trailing slash after a full path is still forgiven (`GET /domains/d/` is GetDomain).
A segment whose escapes are not UTF-8 (`%FF`) is a BadRequest too: replaced with U+FFFD it would
name another resource than the one sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from botocore.model import ServiceModel

from openprofiles.errors import BadRequest

_LABEL = re.compile(r"^\{([^{}]+?)(\+?)\}$")

# Sort ranks of a segment kind: a literal segment is more specific than a label, and a label
# more specific than a greedy label, so `/profiles/keys/delete` is tried before
# `/profiles/{ProfileId}/...` and both before `{Key+}`.
_LITERAL, _SINGLE, _GREEDY = 0, 1, 2


@dataclass(frozen=True)
class _Segment:
    kind: int
    text: str  # the literal text, or the label name


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation: str
    segments: tuple[_Segment, ...]

    @property
    def specificity(self) -> tuple[int, ...]:
        return tuple(segment.kind for segment in self.segments)

    def match(self, segments: list[str]) -> tuple[dict[str, str], str | None] | None:
        """The labels of decoded `segments` if this route's path is theirs, with the name of
        the first label left empty (None: none is)."""
        params: dict[str, str] = {}
        empty: str | None = None
        index = 0
        for position, segment in enumerate(self.segments):
            if segment.kind == _GREEDY:
                # A greedy label takes what the later segments leave over (at least one).
                rest = len(self.segments) - position - 1
                taken = segments[index : len(segments) - rest]
                if not taken or any(part == "" for part in taken):
                    return None
                params[segment.text] = "/".join(taken)
                index += len(taken)
                continue
            if index >= len(segments):
                return None
            text = segments[index]
            if segment.kind == _LITERAL:
                if text != segment.text:
                    return None
            else:
                if text == "" and empty is None:
                    empty = segment.text
                params[segment.text] = text
            index += 1
        if index != len(segments):
            return None
        return params, empty


def _split(raw_path: str) -> list[str]:
    """Split a raw path into raw segments, ignoring one leading slash: a trailing one leaves
    an empty last segment (an empty label, or one `Router` forgives)."""
    path = raw_path.split("?", 1)[0]
    if path.startswith("/"):
        path = path[1:]
    return path.split("/") if path else []


def _decoded(raw_path: str) -> list[str]:
    """The path's segments, each percent-decoded after splitting; BadRequest if one is not
    UTF-8."""
    try:
        return [unquote(part, errors="strict") for part in _split(raw_path)]
    except UnicodeDecodeError:
        raise BadRequest("The path is not valid UTF-8.") from None


def _compile(template: str) -> tuple[_Segment, ...]:
    segments = []
    for part in _split(template.removesuffix("/")):
        label = _LABEL.match(part)
        if label is None:
            segments.append(_Segment(_LITERAL, part))
        else:
            kind = _GREEDY if label.group(2) else _SINGLE
            segments.append(_Segment(kind, label.group(1)))
    return tuple(segments)


class Router:
    """Route table of one service model; `match` returns (operation, decoded URI labels)."""

    def __init__(self, service_model: ServiceModel) -> None:
        routes: dict[str, list[Route]] = {}
        seen: dict[tuple[str, tuple[tuple[int, str], ...]], str] = {}
        # operation -> its URI labels' member names by label name, to name an empty one as
        # validation names a member.
        self._members: dict[str, dict[str, str]] = {}
        for name in service_model.operation_names:
            self._members[name] = _label_members(service_model, name)
            http = service_model.operation_model(name).http
            method = str(http.get("method", "POST")).upper()
            # A query part of requestUri (e.g. `/path?tagging`) is not part of the path.
            template = str(http.get("requestUri", "/")).split("?", 1)[0]
            segments = _compile(template)
            # Two operations whose templates differ only in label names would be ambiguous;
            # fail loudly at start-up rather than route one of them silently.
            key = (method, tuple((s.kind, s.text if s.kind == _LITERAL else "") for s in segments))
            if key in seen:
                raise ValueError(f"ambiguous routes: {seen[key]} and {name} ({method} {template})")
            seen[key] = name
            routes.setdefault(method, []).append(Route(method, template, name, segments))
        for table in routes.values():
            table.sort(key=lambda route: route.specificity)
        self._routes = routes
        # (method, segment count) -> the routes that can match a path of that many segments,
        # still most specific first: a request tries a handful of routes, not all of them.
        self._by_length: dict[tuple[str, int], list[Route]] = {}
        self._longest = max((len(r.segments) for r in self.routes()), default=0)

    def routes(self) -> list[Route]:
        return [route for table in self._routes.values() for route in table]

    def match(self, method: str, raw_path: str) -> tuple[str, dict[str, str]] | None:
        """(operation, decoded labels) of the route `method` and `raw_path` name, or None;
        BadRequest for a path that is not UTF-8 or leaves a label of its route empty."""
        found = self._find(method.upper(), _decoded(raw_path))
        if found is None:
            return None
        operation, params, empty = found
        if empty is not None:
            member = self._members[operation].get(empty, empty)
            raise BadRequest(f"1 validation error detected: {member} must have length at least 1")
        return operation, params

    def operations_at(self, raw_path: str) -> list[tuple[str, str]]:
        """(method, operation) of every route that matches `raw_path` under some method: what
        a request with the wrong method on a known path is told it may use instead. A path
        that is not UTF-8 matches none (and `match` says why)."""
        try:
            segments = _decoded(raw_path)
        except BadRequest:
            return []
        found = []
        for method in sorted(self._routes):
            matched = self._find(method, segments)
            if matched is not None:
                found.append((method, matched[0]))
        return found

    def _find(
        self, method: str, segments: list[str]
    ) -> tuple[str, dict[str, str], str | None] | None:
        """The most specific route of `method` for `segments`: (operation, labels, first empty
        label). With a trailing slash the path is tried as sent first, so an empty last label
        is found as such, then without the slash."""
        tried = [segments, segments[:-1]] if segments and segments[-1] == "" else [segments]
        for candidate in tried:
            for route in self._candidates(method, len(candidate)):
                matched = route.match(candidate)
                if matched is not None:
                    return route.operation, matched[0], matched[1]
        return None

    def _candidates(self, method: str, length: int) -> list[Route]:
        # Paths longer than every template can only match greedy labels; they share one entry
        # so a client cannot grow the cache with ever longer paths.
        if method not in self._routes:
            return []  # and no cache entry: the method is the client's to choose
        length = min(length, self._longest + 1)
        key = (method, length)
        found = self._by_length.get(key)
        if found is None:
            found = [
                route
                for route in self._routes.get(method, ())
                if len(route.segments) == length
                or (
                    any(s.kind == _GREEDY for s in route.segments) and len(route.segments) <= length
                )
            ]
            self._by_length[key] = found
        return found


def _label_members(service_model: ServiceModel, operation: str) -> dict[str, str]:
    shape = service_model.operation_model(operation).input_shape
    if shape is None:
        return {}
    return {
        member.serialization.get("name", name): name
        for name, member in shape.members.items()
        if member.serialization.get("location") == "uri"
    }
