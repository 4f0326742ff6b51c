"""The package surface: a curated `__all__`, and a leaf that imports almost nothing."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import policies

PACKAGE = Path(policies.__file__).parent
ALLOWED_ROOTS = set(sys.stdlib_module_names) | {"pydantic", "yaml", "policies", "__future__"}

# What the gateway calls; the package may offer more, never less.
GATEWAY_API = {
    "load_bundle", "load_bundle_file", "default_bundle_path", "BundleError", "LoadedBundle",
    "Bundle", "UseCase", "DataSet", "RedactionSpec", "EligibilityRule", "ActionClasses",
    "DraftClass", "AutomationClass", "ToolSpec", "ArgConstraint", "CompiledPolicy",
    "CompiledUseCase", "Facts", "Refusal", "Switch", "SwitchEffect", "evaluate_switches",
    "check_eligibility", "RuleFailure", "lower_action_class", "Decision", "decide",
    "ToolCall", "ToolViolation", "ToolJudgement", "judge_tool_calls", "valid_scopes",
    "ScopeError", "parse_scope", "parse_duration", "render_check", "facts_from_customer",
}  # fmt: skip


def test_all_is_complete_and_importable() -> None:
    assert GATEWAY_API <= set(policies.__all__)
    assert sorted(policies.__all__) == policies.__all__
    for name in policies.__all__:
        assert getattr(policies, name) is not None


def test_py_typed_and_default_bundle_ship() -> None:
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "bundles" / "default.yaml").is_file()


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_leaf_imports_only_stdlib_pydantic_and_yaml() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 5
    for module in modules:
        assert _imported_roots(module) <= ALLOWED_ROOTS, module.name


def test_no_eval_or_exec() -> None:
    for module in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec", "compile", "__import__"}, module.name
