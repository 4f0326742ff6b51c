"""The policy bundle schema: what a bundle file may say, checked field by field.

    bundle = Bundle.model_validate(yaml.safe_load(text))

These models are the structural half of validation: every key is known (unknown keys
are errors), every value has its type and shape, and each string that has a syntax
(rule paths, data-set paths, entity names, durations, regular expressions) is checked
here so the error points at the field. Checks that relate one field to another (the
default action class is one of the use case's classes, a rule's values fit its fact)
live in `policies.compiler`, which turns a valid `Bundle` into the runtime forms.

YAML reads some unquoted words as other types (``NO`` is false, ``2026-11-28`` is a
date), so strings are strict: nothing is coerced, and the messages say to quote.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictStr,
    model_validator,
)

from policies.durations import parse_duration

__all__ = [
    "ACTION_CLASSES",
    "RULE_PATHS",
    "TRIPWIRE_KINDS",
    "UNSCANNED_PART_TYPES",
    "ActionClasses",
    "ArgConstraint",
    "AutomationClass",
    "Bundle",
    "DataSet",
    "DraftClass",
    "EligibilityRule",
    "RecommendationClass",
    "RedactionSpec",
    "Scalar",
    "ToolSpec",
    "Tripwire",
    "UseCase",
]

#: The action classes, lowest first: degrading moves left.
ACTION_CLASSES: tuple[str, ...] = ("recommendation", "draft", "automation")

#: OpenAI content part types a use case may let through unscanned.
UNSCANNED_PART_TYPES: tuple[str, ...] = ("image_url", "input_audio", "file")

#: Rule paths; a trailing ``.`` takes a non-empty key after it.
RULE_PATHS: tuple[str, ...] = (
    "customer.authenticated",
    "customer.region",
    "consent.",
    "customer.attributes.",
    "request.queue",
    "request.segment",
)

# Names that reach headers, scopes and metric labels: no spaces, no separators.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
# OpenAI's own rule for function names.
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_ENTITY = re.compile(r"[A-Z][A-Z0-9_]{0,63}", re.ASCII)
_KEY = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_FIELD_PATH = re.compile(rf"{_KEY}(?:\[\])?(?:\.{_KEY}(?:\[\])?)*", re.ASCII)
_PURPOSE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", re.ASCII)


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            "must be 1-64 characters of letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


def _check_tool_name(value: str) -> str:
    if not _TOOL_NAME.fullmatch(value):
        raise ValueError("a tool name is 1-64 characters of letters, digits, '_' or '-'")
    return value


def _check_entity(value: str) -> str:
    if not _ENTITY.fullmatch(value):
        raise ValueError("an entity is an upper-case name such as EMAIL or US_SSN")
    return value


def _check_field_path(value: str) -> str:
    if not _FIELD_PATH.fullmatch(value):
        raise ValueError(
            "a data-set path is dotted keys, each optionally followed by [] for list "
            "elements (e.g. order.items[].sku)"
        )
    return value


def _check_rule_path(value: str) -> str:
    for prefix in ("consent.", "customer.attributes."):
        if value.startswith(prefix):
            key = value[len(prefix) :]
            if not _PURPOSE.fullmatch(key):
                raise ValueError(f"{prefix}<key> needs a key of letters, digits, '_', '.' or '-'")
            return value
    if value in RULE_PATHS:
        return value
    raise ValueError(
        "unknown rule path; use customer.authenticated, customer.region, "
        "consent.<purpose>, customer.attributes.<key>, request.queue or request.segment"
    )


def _check_duration(value: Any) -> str:
    parse_duration(value)  # raises ValueError with the reason
    return str(value)


def _check_pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def _check_scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value
    raise ValueError(
        "must be a JSON scalar (string, number, boolean or null); "
        "quote dates and times so YAML keeps them as strings"
    )


def _check_number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _check_version(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError('must be a string; quote it (e.g. version: "2026-11-28.1")')
    if not 1 <= len(value) <= 64:
        raise ValueError("must be 1-64 characters")
    if not value.isprintable():
        raise ValueError("must be printable characters")
    return value


Name = Annotated[StrictStr, AfterValidator(_check_name)]
ToolName = Annotated[StrictStr, AfterValidator(_check_tool_name)]
Entity = Annotated[StrictStr, AfterValidator(_check_entity)]
FieldPath = Annotated[StrictStr, AfterValidator(_check_field_path)]
RulePath = Annotated[StrictStr, AfterValidator(_check_rule_path)]
Duration = Annotated[str, PlainValidator(_check_duration)]
Pattern = Annotated[StrictStr, AfterValidator(_check_pattern)]
#: A JSON scalar, kept with its exact type (``True`` is not ``1``).
Scalar = Annotated[str | int | float | bool | None, PlainValidator(_check_scalar)]
Scalars = Annotated[list[Scalar], Field(min_length=1)]
Number = Annotated[int | float, PlainValidator(_check_number)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataSet(_Model):
    """The context fields that may go upstream; everything else is stripped."""

    required: list[FieldPath] = []
    optional: list[FieldPath] = []


class RedactionSpec(_Model):
    """Which PII entities are pseudonymised, and whether the answer gets them back."""

    entities: list[Entity]
    restore_in_response: StrictBool = False
    pseudonym_ttl: Duration = "30d"


class EligibilityRule(_Model):
    """``{rule: PATH}`` (the fact must be true) or with one of equals / in / not_in."""

    rule: RulePath
    name: Name | None = None
    equals: Scalar = None
    in_: Scalars | None = Field(default=None, alias="in")
    not_in: Scalars | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> EligibilityRule:
        given = [op for op in ("equals", "in_", "not_in") if op in self.model_fields_set]
        if len(given) > 1:
            raise ValueError("give at most one of equals, in, not_in")
        return self

    @property
    def operator(self) -> Literal["true", "equals", "in", "not_in"]:
        """The comparison this rule makes; ``true`` when no operator is given."""
        if "equals" in self.model_fields_set:
            return "equals"
        if "in_" in self.model_fields_set:
            return "in"
        if "not_in" in self.model_fields_set:
            return "not_in"
        return "true"


class ArgConstraint(_Model):
    """What one argument of an allowlisted tool may be.

    Either ``enum`` or ``type`` is given, so an argument is always a JSON scalar.
    ``pattern``/``min_length``/``max_length`` need ``type: string``; ``min``/``max``
    need ``type: integer`` or ``number``.
    """

    enum: Scalars | None = None
    type: Literal["string", "integer", "number", "boolean"] | None = None
    pattern: Pattern | None = None
    min: Number | None = None
    max: Number | None = None
    min_length: NonNegativeInt | None = None
    max_length: NonNegativeInt | None = None
    optional: StrictBool = False

    @model_validator(mode="after")
    def _consistent(self) -> ArgConstraint:
        if self.enum is None and self.type is None:
            raise ValueError("give enum or type")
        has_string_checks = (
            self.pattern is not None or self.min_length is not None or self.max_length is not None
        )
        if has_string_checks and self.type != "string":
            raise ValueError("pattern, min_length and max_length need type: string")
        if (self.min is not None or self.max is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise ValueError("min and max need type: integer or number")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        if (
            self.min_length is not None
            and self.max_length is not None
            and self.min_length > self.max_length
        ):
            raise ValueError("min_length is greater than max_length")
        return self


class ToolSpec(_Model):
    """An allowlisted tool: its arguments and what each may be."""

    arguments: dict[StrictStr, ArgConstraint] = {}


class RecommendationClass(_Model):
    """Text for a human to read; has no options (write ``recommendation: {}``)."""


class DraftClass(_Model):
    """A reply that waits for a human approver before it may be sent."""

    approval: Literal["required"] = "required"
    expires_after: Duration = "24h"


class AutomationClass(_Model):
    """Tool calls the model may make itself, within an allowlist."""

    tools: Annotated[dict[ToolName, ToolSpec], Field(min_length=1)]
    #: ``block`` refuses the whole response; ``downgrade`` drops the tool calls and
    #: answers as a recommendation. Blocking is the safe default.
    on_violation: Literal["block", "downgrade"] = "block"


class ActionClasses(_Model):
    """The classes a use case offers; a class is offered by giving its key."""

    recommendation: RecommendationClass | None = None
    draft: DraftClass | None = None
    automation: AutomationClass | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        # `draft:` with nothing after it is null in YAML; an author who wrote the key
        # meant to offer the class, so say how instead of silently leaving it out.
        if isinstance(data, dict):
            for key, value in data.items():
                if key in ACTION_CLASSES and value is None:
                    raise ValueError(f"{key} is empty; write {key}: {{}} to offer the class")
            if not data:
                raise ValueError("offer at least one action class")
        return data

    def offered(self) -> tuple[str, ...]:
        """The offered classes, lowest first."""
        return tuple(name for name in ACTION_CLASSES if getattr(self, name) is not None)


#: What a tripwire watches (policies/tripwires.py computes the figures).
TRIPWIRE_KINDS: tuple[str, ...] = (
    "tool_calls_blocked_rate",
    "redaction_rate_spike",
    "upstream_error_rate",
    "consent_failures",
)


class Tripwire(_Model):
    """A threshold over a sliding window that engages a kill switch by itself.

    Which of ``above``/``factor``/``baseline``/``min_count`` a kind takes is checked
    in `policies.tripwires` (so the error names the field); the switch it engages is
    never released automatically.
    """

    name: Name
    kind: Literal[
        "tool_calls_blocked_rate", "redaction_rate_spike", "upstream_error_rate", "consent_failures"
    ]
    mode: Literal["halt", "degrade"]
    window: Duration = "5m"
    scope: StrictStr | None = None
    above: Number | None = None
    factor: Number | None = None
    baseline: Duration | None = None
    min_count: NonNegativeInt | None = None


class UseCase(_Model):
    """One kind of AI assistance, with everything that governs it."""

    route: Name
    data_set: DataSet = DataSet()
    redaction: RedactionSpec
    eligibility: list[EligibilityRule] = []
    default_action_class: Literal["recommendation", "draft", "automation"]
    max_tokens: PositiveInt | None = None
    action_classes: ActionClasses
    allowed_unscanned_parts: list[Literal["image_url", "input_audio", "file"]] = []
    tripwires: list[Tripwire] = []


class Bundle(_Model):
    """A whole policy bundle: a version and its use cases."""

    version: Annotated[str, PlainValidator(_check_version)]
    use_cases: Annotated[dict[Name, UseCase], Field(min_length=1)]
