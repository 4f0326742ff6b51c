"""The IP validators against the standard library's `ipaddress`, which they replace."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redaction.validators import ip_key, ip_ok

# Short strings over the characters an address token is made of, with more colons and
# dots than chance would give, so that most of the grammar's cases come up.
TOKENS = st.lists(
    st.sampled_from([*"0123456789abcdefABCDEF", ":", ":", "::", ".", "0", "ffff", "255", "256"]),
    max_size=24,
).map("".join)


def stdlib(candidate: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


@settings(max_examples=3000, deadline=None)
@given(TOKENS)
def test_ip_ok_accepts_what_ipaddress_accepts(candidate: str) -> None:
    assert ip_ok(candidate) is (stdlib(candidate) is not None)


@settings(max_examples=500, deadline=None)
@given(TOKENS, TOKENS)
def test_ip_key_is_one_spelling_per_address(a: str, b: str) -> None:
    if stdlib(a) is None:
        assert ip_key(a) is None
    elif stdlib(b) is not None:
        assert (ip_key(a) == ip_key(b)) is (stdlib(a) == stdlib(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("2001:0DB8:0000::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
        ("::", "0:0:0:0:0:0:0:0"),
        ("1::", "1:0::0"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_ip_key_spellings_of_one_address(a: str, b: str) -> None:
    assert ip_key(a) == ip_key(b) is not None


@pytest.mark.parametrize(
    "candidate",
    ["", "1.2.3", "01.2.3.4", "256.1.1.1", "1:2:3:4:5:6:7", "1::2::3", ":1::", "1:2:3:4:5:6:7:8:9",
     "12345::", "::1.2.3.04", "1:2:3:4:5:6:7:1.2.3.4", "g::1", "::1%eth0"],
)  # fmt: skip
def test_ip_ok_rejects(candidate: str) -> None:
    assert not ip_ok(candidate)
    assert ip_key(candidate) is None
