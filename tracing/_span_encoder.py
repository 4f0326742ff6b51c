"""OTLP span encoding by hand: a batch of finished SDK spans to the bytes of one
``ExportTraceServiceRequest``, without building a protobuf object per field.

Usage (by ``tracing._span_exporter``, never directly)::

    encoder = SpanEncoder()
    body = encoder.encode(spans)  # == encode_spans(spans).SerializePartialToString()

Why: the SDK encoder (``opentelemetry.exporter.otlp.proto.common`` 1.45.2) makes a
``KeyValue`` and an ``AnyValue`` message per attribute and was the largest single cost of
a gateway call with export on. Here the wire format is written directly, and the encoded
bytes of an attribute whose value is a str, int or bool are kept in a bounded cache, so
the constant attributes every call repeats (operation name, provider, model, decision,
use case...) are encoded once.

Exactness: every choice mirrors the SDK encoder's, so a receiver cannot tell the two
apart (``tests/tracing/test_span_encoder.py`` compares them, byte for byte, on generated
and real spans): spans grouped by resource, then by instrumentation scope, with the SDK's
own hash/equality and first-seen order; fields in field-number order, as upb writes them;
proto3 defaults (0, "", empty bytes) omitted except inside the ``AnyValue`` oneof, where
presence is explicit; ``status``, ``resource``, ``scope`` and each attribute's ``value``
always present as messages, empty or not; ``flags`` holding only the has-is-remote and
is-remote bits of the parent (or, for a link, of the linked context); links without
``trace_state``; span kind mapped INTERNAL..CONSUMER to 1..5. An attribute that cannot be
encoded (an int outside int64, a string that is not valid UTF-8, an unknown type) is
logged and left out, as the SDK encoder does; anything else that fails raises, which the
exporter turns into a failed export, as it does for the SDK encoder.

The SDK's own ``ReadableSpan`` and ``Event`` (exact types, as the span processors hand
them over) are read from the fields behind their properties, which are plain reads of
them (a ``BoundedAttributes``' dict; a ``BoundedList``'s deque; the dropped counts they
keep), enums by identity instead of their ``.value`` property; a subclass is read
through its properties. An attribute set is first looked up in the cache all at once,
in C, and only the pairs not found are encoded one by one. That took the encoding of a
gateway call's two spans from about 0.19 M to 0.14 M instructions (issue #10).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind
from opentelemetry.trace.span import DEFAULT_TRACE_STATE
from opentelemetry.trace.status import Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

_logger = logging.getLogger(__name__)
_BOUNDED: Final = BoundedAttributes
_BOUNDED_LIST: Final = BoundedList
_READABLE: Final = ReadableSpan
_EVENT: Final = Event
_SPAN_CONTEXT: Final = SpanContext
_STATUS: Final = Status
_DEFAULT_TRACE_STATE: Final = DEFAULT_TRACE_STATE  # empty, and immutable

#: Bound of each attribute cache. Values unique to a call (lineage ids, keyed hashes) pass
#: through it too; when it is full it is emptied and the constants come back within a call.
CACHE_ENTRIES: Final = 4096
#: Longer string values are not worth keeping: they are unlikely to repeat.
_CACHE_MAX_STR: Final = 256
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_UINT64_MASK: Final = 2**64 - 1

_Q = struct.Struct("<Q").pack
_D = struct.Struct("<d").pack
_TIMES = struct.Struct("<BQBQ").pack  # Span start_time_unix_nano (7) and end (8), fixed64
_SMALL: Final = tuple(bytes((i,)) for i in range(128))

# SDK SpanKind value (INTERNAL=0 .. CONSUMER=4) -> OTLP Span.SpanKind (1 .. 5).
_KIND: Final = (b"\x30\x01", b"\x30\x02", b"\x30\x03", b"\x30\x04", b"\x30\x05")
# The same, by the identity of the SpanKind member (an enum's .value is a Python property).
_KIND_BY_ID: Final = {id(kind): _KIND[kind.value] for kind in SpanKind}
# StatusCode member identity -> its value.
_CODE_BY_ID: Final = {id(code): code.value for code in StatusCode}
# Span.flags (field 16, fixed32): SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK (0x100), plus
# SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK (0x200) when the parent is remote.
_SPAN_FLAGS_LOCAL: Final = b"\x85\x01\x00\x01\x00\x00"
_SPAN_FLAGS_REMOTE: Final = b"\x85\x01\x00\x03\x00\x00"
# Link.flags (field 6, fixed32), the same two bits.
_LINK_FLAGS_LOCAL: Final = b"\x35\x00\x01\x00\x00"
_LINK_FLAGS_REMOTE: Final = b"\x35\x00\x03\x00\x00"
_EMPTY_STATUS: Final = b"\x7a\x00"

# Field tags (field number << 3 | wire type) of the repeated KeyValue fields.
TAG_SPAN_ATTRIBUTE: Final = b"\x4a"  # Span.attributes = 9
TAG_EVENT_ATTRIBUTE: Final = b"\x1a"  # Span.Event.attributes = 3
TAG_LINK_ATTRIBUTE: Final = b"\x22"  # Span.Link.attributes = 4
TAG_RESOURCE_ATTRIBUTE: Final = b"\x0a"  # Resource.attributes = 1
TAG_SCOPE_ATTRIBUTE: Final = b"\x1a"  # InstrumentationScope.attributes = 3


def _varint(value: int) -> bytes:
    """Unsigned base-128 varint (callers pass values already in the uint64 range)."""
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    size = len(payload)
    return tag + (_SMALL[size] if size < 128 else _varint(size)) + payload


def _string(tag: bytes, value: str) -> bytes:
    """A proto3 string field; empty strings are omitted as upb omits them."""
    if not value:
        return b""
    return _field(tag, value.encode("utf-8"))


def any_value(value: Any) -> bytes:
    """The body of an ``AnyValue`` message, mirroring the SDK's ``_encode_value``: the same
    type tests in the same order (bool before int; str and bytes before Sequence)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & _UINT64_MASK)
    if isinstance(value, float):
        return b"\x21" + _D(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join([_field(b"\x0a", any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        pairs = [_field(b"\x0a", key_value(str(k), v)) for k, v in value.items()]
        return _field(b"\x32", b"".join(pairs))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def key_value(key: str, value: Any) -> bytes:
    """The body of a ``KeyValue`` message; ``value`` is always present, even if empty."""
    return _string(b"\x0a", key) + _field(b"\x12", any_value(value))


def _flags_remote(context: SpanContext | None) -> bool:
    return bool(context and context.is_remote)


class SpanEncoder:
    """Encodes span batches to ``ExportTraceServiceRequest`` bytes.

    Holds the caches, so one instance belongs to one exporter. Safe to call from several
    threads: the caches are plain dicts of immutable bytes, and a race costs at most an
    entry encoded twice.
    """

    __slots__ = ("_attribute_caches", "_cache_entries", "_names", "_resources", "_scopes")

    def __init__(self, cache_entries: int = CACHE_ENTRIES) -> None:
        self._cache_entries = cache_entries
        # Per field tag: (key, value, type of value) -> the tagged, length-prefixed KeyValue.
        self._attribute_caches: dict[bytes, dict[tuple[str, Any, type], bytes]] = {}
        # id(object) -> (object, encoded message); the object is kept so the id stays its.
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope | None, bytes]] = {}
        # Span name -> its encoded field (names are few: the route, "chat {model}", steps).
        self._names: dict[str, bytes] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        """``encode_spans(spans).SerializePartialToString()``, byte for byte."""
        # Group as the SDK encoder does: nested dicts keyed by Resource, then by scope,
        # so by their __hash__/__eq__, in first-seen order. Resource hashes a JSON dump of
        # its attributes, so each distinct object is looked up once per batch by identity.
        canonical_resource: dict[Resource, Resource] = {}
        canonical_scope: dict[InstrumentationScope | None, InstrumentationScope | None] = {}
        resource_of: dict[int, Resource] = {}
        scope_of: dict[int, InstrumentationScope | None] = {}
        groups: dict[
            int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]
        ]
        groups = {}
        last_resource: object = None
        last_scope: object = None
        last_list: list[bytes] = []
        for span in spans:
            if type(span) is _READABLE:  # its properties, read from the fields behind them
                resource = span._resource
                scope = span._instrumentation_scope or None
            else:
                resource = span.resource
                scope = span.instrumentation_scope or None
            if resource is last_resource and scope is last_scope:
                last_list.append(self._span(span))  # the common case: one tracer's batch
                continue
            found = resource_of.get(id(resource))
            if found is None:
                found = resource_of[id(resource)] = canonical_resource.setdefault(
                    resource, resource
                )
            scope_key = id(scope)
            if scope_key in scope_of:
                canonical = scope_of[scope_key]
            else:
                canonical = scope_of[scope_key] = canonical_scope.setdefault(scope, scope)
            group = groups.get(id(found))
            if group is None:
                group = groups[id(found)] = (found, {})
            by_scope = group[1]
            scoped = by_scope.get(id(canonical))
            if scoped is None:
                scoped = by_scope[id(canonical)] = (canonical, [])
            scoped[1].append(self._span(span))
            last_resource, last_scope, last_list = resource, scope, scoped[1]
        out = []
        for resource, by_scope in groups.values():
            scope_spans = [
                _field(b"\x12", self._scope(scope) + b"".join(encoded) + _schema(scope))
                for scope, encoded in by_scope.values()
            ]
            body = self._resource(resource) + b"".join(scope_spans)
            out.append(_field(b"\x0a", body + _string(b"\x1a", resource.schema_url)))
        return b"".join(out)

    # -- messages ---------------------------------------------------------------------

    def _span(self, span: ReadableSpan) -> bytes:
        attributes: Any
        events: Any
        links: Any
        if type(span) is _READABLE:
            # What ReadableSpan's properties return, read from the fields behind them:
            # ``attributes`` is a read-only view of ``_attributes or {}``, ``events`` and
            # ``links`` are tuples of theirs, a dropped count is a BoundedAttributes' or
            # BoundedList's own or 0. Anything unusual goes through the properties.
            context = span._context
            parent = span._parent
            name = span._name
            kind = span._kind
            start = span._start_time
            end = span._end_time
            status = span._status
            attributes = span._attributes
            if type(attributes) is _BOUNDED:
                dropped_attributes = attributes.dropped
                attributes = attributes._dict
            elif attributes is None or type(attributes) is dict:
                dropped_attributes = 0
            else:
                attributes = span.attributes
                dropped_attributes = span.dropped_attributes
            events = span._events
            if type(events) is tuple:
                dropped_events = 0
            elif type(events) is _BOUNDED_LIST:
                dropped_events = events.dropped
                events = tuple(events._dq)  # type: ignore[attr-defined]
            else:
                events = span.events
                dropped_events = span.dropped_events
            links = span._links
            if type(links) is tuple:
                dropped_links = 0
            elif type(links) is _BOUNDED_LIST:
                dropped_links = links.dropped
                links = tuple(links._dq)  # type: ignore[attr-defined]
            else:
                links = span.links
                dropped_links = span.dropped_links
        else:
            context = span.get_span_context()
            parent = span.parent
            name = span.name
            kind = span.kind
            start = span.start_time
            end = span.end_time
            status = span.status
            attributes = span.attributes
            dropped_attributes = span.dropped_attributes
            events = span.events
            dropped_events = span.dropped_events
            links = span.links
            dropped_links = span.dropped_links
        assert context is not None  # a finished SDK span always has one
        if type(context) is _SPAN_CONTEXT:
            trace_id, span_id, _, _, trace_state, _ = context
        else:
            trace_id = context.trace_id
            span_id = context.span_id
            trace_state = context.trace_state
        parts = [
            b"\x0a\x10",
            trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            span_id.to_bytes(8, "big"),
        ]
        if trace_state is not None and trace_state is not _DEFAULT_TRACE_STATE:
            state = ",".join([f"{key}={value}" for key, value in trace_state.items()])
            if state:
                parts.append(_field(b"\x1a", state.encode("utf-8")))
        if parent:
            parts.append(b"\x22\x08")
            parts.append(parent.span_id.to_bytes(8, "big"))
        if name:
            encoded = self._names.get(name)
            if encoded is None:
                encoded = _field(b"\x2a", name.encode("utf-8"))
                if type(name) is str and len(self._names) < 256:
                    self._names[name] = encoded
            parts.append(encoded)
        encoded = _KIND_BY_ID.get(id(kind))
        parts.append(_KIND[kind.value] if encoded is None else encoded)
        if start and end:
            parts.append(_TIMES(0x39, start, 0x41, end))
        else:
            if start:
                parts.append(b"\x39" + _Q(start))
            if end:
                parts.append(b"\x41" + _Q(end))
        if attributes:
            self._attributes(parts, attributes, TAG_SPAN_ATTRIBUTE)
        if dropped_attributes:
            parts.append(b"\x50" + _varint(dropped_attributes))
        if events:
            for event in events:
                parts.append(_field(b"\x5a", self._event(event)))
        if dropped_events:
            parts.append(b"\x60" + _varint(dropped_events))
        if links:
            for link in links:
                parts.append(_field(b"\x6a", self._link(link)))
        if dropped_links:
            parts.append(b"\x70" + _varint(dropped_links))
        if status is not None:
            if type(status) is _STATUS and id(status._status_code) in _CODE_BY_ID:
                code = _CODE_BY_ID[id(status._status_code)]
                message = status._description
            else:
                code = status.status_code.value
                message = status.description
            if code or message:
                body = _string(b"\x12", message) if message else b""
                if code:
                    body += b"\x18" + _varint(code)
                parts.append(_field(b"\x7a", body))
            else:
                parts.append(_EMPTY_STATUS)
        parts.append(_SPAN_FLAGS_REMOTE if _flags_remote(parent) else _SPAN_FLAGS_LOCAL)
        return _field(b"\x12", b"".join(parts))

    def _event(self, event: Any) -> bytes:
        parts: list[bytes] = []
        if type(event) is _EVENT:  # its properties, read from the fields behind them
            timestamp = event._timestamp
            name = event._name
            attributes = event._attributes
            if type(attributes) is _BOUNDED:
                dropped = attributes.dropped
                attributes = attributes._dict
            else:
                dropped = event.dropped_attributes
        else:
            timestamp = event.timestamp
            name = event.name
            attributes = event.attributes
            dropped = event.dropped_attributes
        if timestamp:
            parts.append(b"\x09" + _Q(timestamp))
        if name:
            parts.append(_field(b"\x12", name.encode("utf-8")))
        if attributes:
            self._attributes(parts, attributes, TAG_EVENT_ATTRIBUTE)
        if dropped:
            parts.append(b"\x20" + _varint(dropped))
        return b"".join(parts)

    def _link(self, link: Any) -> bytes:
        context = link.context
        parts = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        attributes = link.attributes
        if attributes:
            self._attributes(parts, attributes, TAG_LINK_ATTRIBUTE)
        dropped = link.dropped_attributes
        if dropped:
            parts.append(b"\x28" + _varint(dropped))
        parts.append(_LINK_FLAGS_REMOTE if _flags_remote(context) else _LINK_FLAGS_LOCAL)
        return b"".join(parts)

    def _resource(self, resource: Resource) -> bytes:
        """``ResourceSpans.resource`` (field 1), present even when it has no attributes."""
        cached = self._resources.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1]
        parts: list[bytes] = []
        self._attributes(parts, resource.attributes, TAG_RESOURCE_ATTRIBUTE)
        encoded = _field(b"\x0a", b"".join(parts))
        if len(self._resources) >= 64:
            self._resources.clear()
        self._resources[id(resource)] = (resource, encoded)
        return encoded

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        """``ScopeSpans.scope`` (field 1), present (empty) even without a scope."""
        cached = self._scopes.get(id(scope))
        if cached is not None and cached[0] is scope:
            return cached[1]
        parts: list[bytes] = []
        if scope is not None:
            parts.append(_string(b"\x0a", scope.name))
            parts.append(_string(b"\x12", scope.version or ""))
            self._attributes(parts, scope.attributes, TAG_SCOPE_ATTRIBUTE)
        encoded = _field(b"\x0a", b"".join(parts))
        if len(self._scopes) >= 64:
            self._scopes.clear()
        self._scopes[id(scope)] = (scope, encoded)
        return encoded

    def _attributes(self, parts: list[bytes], attributes: Any, tag: bytes) -> None:
        """Append one tagged ``KeyValue`` field per attribute, from the cache when the
        value is a plain str, int or bool or a short tuple of strs; the cache key carries
        the value's type because ``True == 1 == 1.0`` would otherwise share an entry."""
        plain = _plain(attributes)
        if not plain:
            return
        cache = self._attribute_caches.get(tag)
        if cache is None:
            cache = self._attribute_caches.setdefault(tag, {})
        # Every pair looked up at once, in C. A hit is always right: an entry is only
        # ever made for a (key, value, type) of the kinds below, and only an equal key of
        # the same type finds it (a tuple equal to a tuple of strs holds strs).
        values = plain.values()
        try:
            found = list(map(cache.get, zip(plain, values, map(type, values), strict=False)))
        except Exception:  # an unhashable value (a dict, a list): pair by pair below
            found = [None] * len(plain)
        else:
            if None not in found:
                parts += found  # type: ignore[arg-type]  # no None in it
                return
        for (key, value), encoded in zip(plain.items(), found, strict=False):
            if encoded is not None:
                parts.append(encoded)
                continue
            kind = type(value)
            if kind is str or kind is int or kind is bool or (kind is tuple and _strings(value)):
                cache_key = (key, value, kind)
                encoded = cache.get(cache_key)
                if encoded is None:
                    encoded = _tagged_key_value(tag, key, value)
                    if encoded is None:
                        continue
                    if kind is int or kind is bool or len(value) <= _CACHE_MAX_STR:
                        if len(cache) >= self._cache_entries:
                            cache.clear()
                        cache[cache_key] = encoded
                parts.append(encoded)
            else:
                encoded = _tagged_key_value(tag, key, value)
                if encoded is not None:
                    parts.append(encoded)


def _plain(attributes: Any) -> Mapping[str, Any]:
    """A plain dict of the attributes when it comes cheap: ``ReadableSpan.attributes`` is a
    ``MappingProxyType`` over the SDK's ``BoundedAttributes``, whose ``items()`` runs a
    Python ``__getitem__`` per key, while ``copy()`` (public on both) is one C dict copy
    in the same order."""
    if type(attributes) is dict:
        return attributes
    if type(attributes) is _BOUNDED:  # its copy() is a copy of this dict
        return attributes._dict
    if type(attributes) is MappingProxyType:
        copied = attributes.copy()
        if type(copied) is dict:
            return copied
    return attributes  # type: ignore[no-any-return]


def _strings(value: tuple[Any, ...]) -> bool:
    """A short tuple of plain strs (the SDK stores sequences as tuples): cacheable, since
    no other tuple equals it; ``(True,) == (1,)`` is why other element types are not."""
    if len(value) > 8:
        return False
    for item in value:
        if type(item) is not str or len(item) > _CACHE_MAX_STR:
            return False
    return True


def _tagged_key_value(tag: bytes, key: str, value: Any) -> bytes | None:
    """One attribute as a field, or ``None`` (logged) when the SDK encoder would skip it."""
    try:
        return _field(tag, key_value(key, value))
    except Exception as error:
        _logger.exception("Failed to encode key %s: %s", key, error)
        return None


def _schema(scope: InstrumentationScope | None) -> bytes:
    """``ScopeSpans.schema_url`` (field 3)."""
    return b"" if scope is None else _string(b"\x1a", scope.schema_url or "")
