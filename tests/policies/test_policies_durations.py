"""Bundle durations (DESIGN 10.16)."""

from __future__ import annotations

import pytest

from policies import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("90s", 90),
        ("1m", 60),
        ("90m", 5400),
        ("24h", 86400),
        ("1d", 86400),
        ("30d", 2_592_000),
        ("007h", 25200),
        ("3650d", 3650 * 86400),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a duration"),
        ("24", "expected a duration"),
        ("h", "expected a duration"),
        ("24H", "expected a duration"),
        ("1.5h", "expected a duration"),
        ("-1h", "expected a duration"),
        ("+1h", "expected a duration"),
        (" 1h", "expected a duration"),
        ("1h ", "expected a duration"),
        ("1 h", "expected a duration"),
        ("1h30m", "expected a duration"),
        ("1w", "expected a duration"),
        ("1ms", "expected a duration"),
        ("\u0661h", "expected a duration"),
        ("0s", "longer than zero"),
        ("0d", "longer than zero"),
        ("3651d", "at most 3650d"),
        ("99999999999999999999s", "at most 3650d"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize("value", [24, 1.5, None, b"1h"])
def test_parse_duration_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)  # type: ignore[arg-type]
