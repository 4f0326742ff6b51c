"""Loading bundles: fixtures, the shipped bundle, hashing, and error reporting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from policies import (
    Bundle,
    BundleError,
    LoadedBundle,
    default_bundle_path,
    load_bundle,
    load_bundle_file,
)

TESTDATA = Path(__file__).parent / "testdata"
VALID = sorted((TESTDATA / "valid").glob("*.yaml"))
INVALID = sorted((TESTDATA / "invalid").glob("*.yaml"))

MINIMAL = """\
version: t
use_cases:
  triage:
    route: r
    redaction: {entities: []}
    default_action_class: recommendation
    action_classes: {recommendation: {}}
"""


def _expectation(path: Path) -> tuple[str, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    where, _, message = first.removeprefix("# expect: ").partition(": ")
    return where, message


def test_fixture_sets_are_not_empty() -> None:
    assert len(VALID) >= 4
    assert len(INVALID) >= 50


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_loads(path: Path) -> None:
    loaded = load_bundle_file(path)
    assert isinstance(loaded, LoadedBundle)
    assert loaded.policy.version == loaded.version == loaded.bundle.version
    assert loaded.policy.sha256 == loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for name, uc in loaded.policy.use_cases.items():
        assert uc.name == name
        assert uc.default_action_class in uc.action_classes


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_names_path_and_message(path: Path) -> None:
    where, message = _expectation(path)
    with pytest.raises(BundleError) as info:
        load_bundle_file(path)
    err = info.value
    assert err.source == str(path)
    matches = [m for p, m in err.errors if p == where]
    assert matches, f"no error at {where!r}; got {err.errors}"
    assert any(m.startswith(message) for m in matches), f"got {matches}"
    assert f"{path}: {where}: {message}" in str(err)


# -- the shipped bundle ------------------------------------------------------------------

ALL_ENTITIES = frozenset(
    {"EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "UK_NINO"}
)


def test_default_bundle_path_is_package_data() -> None:
    path = default_bundle_path()
    assert path.name == "default.yaml"
    assert path.parent.name == "bundles"
    assert path.parent.parent.name == "policies"
    assert path.is_file()


def test_default_bundle_triage() -> None:
    loaded = load_bundle_file(default_bundle_path())
    assert loaded.version == "2026-11-28.1"
    assert set(loaded.policy.use_cases) == {"triage", "reply_drafting"}
    uc = loaded.policy.use_cases["triage"]
    assert uc.route == "support-default"
    assert uc.required == ("product_id", "account_status")
    assert uc.optional == ("recent_case_category", "language", "order.items[].sku")
    assert uc.entities == ALL_ENTITIES
    assert uc.restore_in_response is True
    assert uc.pseudonym_ttl_s == 30 * 86400
    assert [(r.path, r.name, r.operator, r.values) for r in uc.eligibility] == [
        ("consent.ai_assist", "ai-assist-consent", "true", ()),
        ("customer.authenticated", None, "true", ()),
        ("customer.region", None, "in", ("GB", "IE", "US")),
    ]
    assert uc.default_action_class == "recommendation"
    assert uc.action_classes == {"recommendation", "draft", "automation"}
    assert uc.draft_expires_after_s == 86400
    assert uc.on_violation == "downgrade"
    assert uc.max_tokens == 800
    assert list(uc.tools) == ["set_priority", "route_to_queue"]
    priority = uc.tools["set_priority"].args["priority"]
    assert priority.enum == ("P2", "P3")
    assert priority.optional is False
    route = uc.tools["route_to_queue"]
    assert route.args["queue"].enum == ("billing", "shipping")
    note = route.args["note"]
    assert (note.type, note.max_length, note.optional) == ("string", 200, True)
    assert route.required == {"queue"}
    assert uc.allowed_unscanned_parts == frozenset()


def test_default_bundle_reply_drafting() -> None:
    uc = load_bundle_file(default_bundle_path()).policy.use_cases["reply_drafting"]
    assert uc.route == "support-default"
    assert uc.required == ("product_id",)
    assert uc.optional == ("language", "recent_case_category")
    assert uc.entities == ALL_ENTITIES
    assert uc.restore_in_response is True
    assert [r.param for r in uc.eligibility] == ["ai-assist-consent", "customer.authenticated"]
    assert uc.default_action_class == "draft"
    assert uc.action_classes == {"recommendation", "draft"}
    assert uc.tools == {}
    assert uc.on_violation == "block"
    assert uc.max_tokens == 1200


def test_policy_routes_and_tools() -> None:
    policy = load_bundle_file(TESTDATA / "valid" / "full.yaml").policy
    assert policy.routes() == {"support-default", "billing"}
    assert policy.tools() == {"escalate", "close_case", "set_priority", "refund"}


def test_full_fixture_compiles_every_option() -> None:
    uc = load_bundle_file(TESTDATA / "valid" / "full.yaml").policy.use_cases["triage"]
    assert uc.pseudonym_ttl_s == 7 * 86400
    assert uc.draft_expires_after_s == 90 * 60
    assert uc.on_violation == "block"
    assert uc.allowed_unscanned_parts == {"image_url", "input_audio", "file"}
    assert [r.operator for r in uc.eligibility] == [
        "true",
        "equals",
        "in",
        "not_in",
        "not_in",
        "equals",
    ]
    assert uc.eligibility[3].kind == "attribute"
    assert uc.eligibility[3].key == "tier"
    assert uc.tools["escalate"].args == {}
    refund = uc.tools["refund"]
    assert refund.required == {"amount", "order_id", "level"}
    assert refund.args["order_id"].pattern is not None
    assert refund.args["order_id"].pattern.pattern == "O-[0-9]{6}"


def test_unquoted_values_keep_their_yaml_types() -> None:
    uc = load_bundle_file(TESTDATA / "valid" / "full.yaml").policy.use_cases["triage"]
    assert uc.eligibility[3].values == ("blocked", 0, False, None)
    assert uc.tools["refund"].args["level"].enum == (1, 2, True, None, 2.5)


def test_bundle_model_is_frozen() -> None:
    bundle = load_bundle(MINIMAL).bundle
    assert isinstance(bundle, Bundle)
    with pytest.raises(ValueError, match="frozen"):
        bundle.version = "other"  # type: ignore[misc]


def test_defaults_are_fail_safe() -> None:
    text = MINIMAL.replace(
        "action_classes: {recommendation: {}}",
        "action_classes: {recommendation: {}, draft: {}, automation: {tools: {t: {}}}}",
    )
    uc = load_bundle(text).policy.use_cases["triage"]
    assert uc.on_violation == "block"
    assert uc.draft_expires_after_s == 24 * 3600
    assert uc.pseudonym_ttl_s == 30 * 86400
    assert uc.restore_in_response is False
    assert uc.required == uc.optional == ()
    assert uc.eligibility == ()
    assert uc.max_tokens is None
    assert uc.allowed_unscanned_parts == frozenset()


# -- hashing ---------------------------------------------------------------------------


def test_sha256_is_over_the_exact_bytes() -> None:
    raw = MINIMAL.encode()
    assert load_bundle(raw).sha256 == hashlib.sha256(raw).hexdigest()
    assert load_bundle(MINIMAL).sha256 == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(
    "variant",
    [
        MINIMAL + "\n",
        MINIMAL.replace("\n", "\r\n"),
        "# a comment\n" + MINIMAL,
        MINIMAL.replace("version: t", "version: 't'"),
    ],
    ids=["trailing-newline", "crlf", "comment", "quoting"],
)
def test_sha256_changes_with_any_byte(variant: str) -> None:
    original = load_bundle(MINIMAL)
    changed = load_bundle(variant)
    assert changed.bundle == original.bundle
    assert changed.sha256 != original.sha256
    assert changed.sha256 == hashlib.sha256(variant.encode()).hexdigest()
    assert changed.text == variant


def test_sha256_of_bytes_with_bom_and_non_ascii() -> None:
    raw = "\ufeff".encode() + MINIMAL.replace("version: t", 'version: "é-1"').encode()
    loaded = load_bundle(raw)
    assert loaded.sha256 == hashlib.sha256(raw).hexdigest()
    assert loaded.version == "é-1"
    assert loaded.text.encode() == raw


def test_sha256_is_lowercase_hex() -> None:
    digest = load_bundle(MINIMAL).sha256
    assert len(digest) == 64
    assert digest == digest.lower()
    int(digest, 16)


# -- error reporting -------------------------------------------------------------------


def test_error_string_is_one_line_per_error() -> None:
    text = MINIMAL.replace("route: r", "route: r\n    colour: blue\n    shape: round")
    with pytest.raises(BundleError) as info:
        load_bundle(text, source="deploy/bundle.yaml")
    assert info.value.errors == [
        ("use_cases.triage.colour", "unknown key"),
        ("use_cases.triage.shape", "unknown key"),
    ]
    assert str(info.value).splitlines() == [
        "deploy/bundle.yaml: use_cases.triage.colour: unknown key",
        "deploy/bundle.yaml: use_cases.triage.shape: unknown key",
    ]
    assert isinstance(info.value, ValueError)


def test_cross_field_errors_are_all_reported() -> None:
    text = MINIMAL.replace("entities: []", "entities: [EMAIL, EMAIL]").replace(
        "default_action_class: recommendation", "default_action_class: draft"
    )
    with pytest.raises(BundleError) as info:
        load_bundle(text)
    assert [p for p, _ in info.value.errors] == [
        "use_cases.triage.default_action_class",
        "use_cases.triage.redaction.entities[1]",
    ]


def test_default_source_name() -> None:
    with pytest.raises(BundleError) as info:
        load_bundle("[]")
    assert info.value.source == "<bundle>"
    assert (
        str(info.value) == "<bundle>: (top level): a bundle must be a mapping (version, use_cases)"
    )


def test_invalid_utf8_bytes() -> None:
    with pytest.raises(BundleError) as info:
        load_bundle(b"version: \xff\n", source="x.yaml")
    assert info.value.errors == [("(top level)", "not valid UTF-8 (byte 9)")]


def test_unencodable_text() -> None:
    with pytest.raises(BundleError) as info:
        load_bundle("version: \udc80\n")
    assert info.value.errors == [("(top level)", "not encodable as UTF-8 (character 9)")]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(BundleError) as info:
        load_bundle_file(missing)
    assert info.value.source == str(missing)
    assert info.value.errors == [("(top level)", "cannot read the file: No such file or directory")]


def test_file_source_is_the_path_as_given(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(MINIMAL.replace("route: r", "route: 'r r'"), encoding="utf-8")
    with pytest.raises(BundleError, match=rf"^{path}: use_cases.triage.route: must be 1-64"):
        load_bundle_file(str(path))


def test_yaml_error_without_position_is_reported() -> None:
    # A tab where YAML wants indentation triggers a scanner error with a mark; an
    # unknown tag triggers a constructor error; both name a line.
    with pytest.raises(BundleError) as info:
        load_bundle("version: !!python/object:os.system x\n")
    assert info.value.errors[0][0] == "line 1"
    assert "could not determine a constructor" in info.value.errors[0][1]


def test_yaml_error_without_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    def explode(*_: object, **__: object) -> None:
        raise yaml.MarkedYAMLError(problem="odd")

    monkeypatch.setattr(yaml, "load", explode)
    with pytest.raises(BundleError) as info:
        load_bundle("x: 1")
    assert info.value.errors == [("(top level)", "odd")]


def test_plain_yaml_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    def explode(*_: object, **__: object) -> None:
        raise yaml.YAMLError("reader trouble")

    monkeypatch.setattr(yaml, "load", explode)
    with pytest.raises(BundleError) as info:
        load_bundle("x: 1")
    assert info.value.errors == [("(top level)", "invalid YAML: reader trouble")]


def test_unhashable_yaml_key_is_a_yaml_error() -> None:
    with pytest.raises(BundleError) as info:
        load_bundle("? [a, b]\n: 1\n")
    assert info.value.errors[0][0] == "line 1"
    assert "unhashable key" in info.value.errors[0][1]


def test_no_python_objects_from_yaml() -> None:
    with pytest.raises(BundleError):
        load_bundle("!!python/name:os.system\n")
