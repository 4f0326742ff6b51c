"""Every span, event and metric name Casegate emits, in one place.

Usage::

    from tracing import attributes as attr

    span.set(attr.CASEGATE_USE_CASE, "refund_triage")
    span.set(attr.redaction_count("EMAIL_ADDRESS"), 2)

GenAI names follow semantic-conventions v1.41.1. The Python semconv package marks its
``GEN_AI_*`` constants deprecated while the GenAI conventions move to their own
repository, so we spell the names here instead of importing them. ``gen_ai.provider.name``
replaces the deprecated ``gen_ai.system``.

Privacy rule for everything below: values are codes, counts, model and route names,
never message content, tool arguments, raw customer identifiers, keys or tokens.
``casegate.customer_ref`` carries only the keyed hash.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

# --- GenAI semantic conventions (v1.41.1) -------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"  # noqa: S105 (a name, not a secret)

GEN_AI_OPERATION_CHAT: Final = "chat"
GEN_AI_TOKEN_TYPE_INPUT: Final = "input"  # noqa: S105 (a name, not a secret)
GEN_AI_TOKEN_TYPE_OUTPUT: Final = "output"  # noqa: S105 (a name, not a secret)

# --- General semantic conventions ----------------------------------------------------
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"  # of the upstream provider, never the gateway
SERVER_PORT: Final = "server.port"
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
HTTP_ROUTE: Final = "http.route"
URL_PATH: Final = "url.path"

# --- Casegate -----------------------------------------------------------------------
CASEGATE_USE_CASE: Final = "casegate.use_case"
CASEGATE_ACTION_CLASS_REQUESTED: Final = "casegate.action_class.requested"
CASEGATE_ACTION_CLASS_APPLIED: Final = "casegate.action_class.applied"
CASEGATE_DECISION: Final = "casegate.decision"
CASEGATE_POLICY_VERSION: Final = "casegate.policy.version"
CASEGATE_POLICY_SHA256: Final = "casegate.policy.sha256"
CASEGATE_POLICY_MODE: Final = "casegate.policy.mode"
CASEGATE_LINEAGE_ID: Final = "casegate.lineage_id"
CASEGATE_REQUEST_ID: Final = "casegate.request_id"
CASEGATE_ROUTE: Final = "casegate.route"
CASEGATE_KILL_SWITCHES: Final = "casegate.kill_switches"
CASEGATE_REDACTIONS_PREFIX: Final = "casegate.redactions."
CASEGATE_FIELDS_USED_COUNT: Final = "casegate.fields.used_count"
CASEGATE_FIELDS_STRIPPED_COUNT: Final = "casegate.fields.stripped_count"
CASEGATE_REFUSAL_CODE: Final = "casegate.refusal.code"
CASEGATE_TOOL_CALLS_BLOCKED: Final = "casegate.tool_calls.blocked"
CASEGATE_CLIENT: Final = "casegate.client"
CASEGATE_CUSTOMER_REF: Final = "casegate.customer_ref"  # keyed hash only
CASEGATE_ATTEMPT: Final = "casegate.attempt"
CASEGATE_DEPLOYMENT: Final = "casegate.deployment"
CASEGATE_DRY_RUN: Final = "casegate.dry_run"
CASEGATE_STEP: Final = "casegate.step"

_ENTITY = re.compile(r"[A-Za-z0-9_]{1,64}")


@lru_cache(maxsize=256)
def redaction_count(entity: str) -> str:
    """Attribute name for the number of ``entity`` redactions, e.g.
    ``casegate.redactions.EMAIL_ADDRESS``.

    Entity names are bundle identifiers, not data; anything else is refused so that a
    caller cannot smuggle a value into an attribute name.
    """
    if not _ENTITY.fullmatch(entity):
        raise ValueError(f"redaction entity must match [A-Za-z0-9_]{{1,64}}: {entity!r}")
    return CASEGATE_REDACTIONS_PREFIX + entity


# --- Span event names (guardrail outcomes on the SERVER span) ------------------------
EVENT_POLICY_DECISION: Final = "casegate.policy.decision"
EVENT_REDACTION: Final = "casegate.redaction"
EVENT_TOOL_CALL_BLOCKED: Final = "casegate.tool_call.blocked"
EVENT_KILL_SWITCH: Final = "casegate.kill_switch"
EVENT_REFUSAL: Final = "casegate.refusal"

# --- Metric instruments --------------------------------------------------------------
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"  # noqa: S105 (a name, not a secret)
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_GATEWAY_OVERHEAD: Final = "casegate.gateway.overhead"
METRIC_REQUESTS: Final = "casegate.requests"
METRIC_REFUSALS: Final = "casegate.refusals"
METRIC_POLICY_EXCEPTIONS: Final = "casegate.policy_exceptions"
METRIC_TOOL_CALLS_BLOCKED: Final = "casegate.tool_calls.blocked"
METRIC_KILL_SWITCH_REFUSALS: Final = "casegate.kill_switch.refusals"

# Semconv ExplicitBucketBoundaries for the GenAI client histograms. The conventions give
# no separate boundaries for time-to-first-chunk; it shares the duration ones.
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TOKEN_BUCKETS: Final[tuple[float, ...]] = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
# Our own overhead is expected in the sub-millisecond to tens-of-milliseconds range.
OVERHEAD_BUCKETS: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

# Counter name -> (unit, description). ``Telemetry.count`` accepts other names too.
COUNTERS: Final[dict[str, tuple[str, str]]] = {
    METRIC_REQUESTS: ("{request}", "Chat calls handled by the gateway."),
    METRIC_REFUSALS: ("{request}", "Calls the gateway refused, by refusal code."),
    METRIC_POLICY_EXCEPTIONS: (
        "{exception}",
        "Blocked or removed tool calls plus ineligible refusals.",
    ),
    METRIC_TOOL_CALLS_BLOCKED: ("{tool_call}", "Tool calls blocked or removed by policy."),
    METRIC_KILL_SWITCH_REFUSALS: ("{request}", "Calls refused because a kill switch is engaged."),
}
