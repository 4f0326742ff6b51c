"""The circuit breaker's states, driven by a fake clock."""

from __future__ import annotations

from gateway.providers.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_back() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        b.failure("m")
    assert b.allow("m") and b.state("m") == "closed"
    b.failure("m")
    assert b.state("m") == "open" and not b.allow("m")
    clock.now += 9.9
    assert not b.allow("m")
    clock.now += 0.2
    assert b.state("m") == "half_open"
    assert b.allow("m")  # the probe
    assert not b.allow("m")  # one probe at a time
    b.failure("m")  # the probe failed: open again, a fresh cool-down
    assert b.state("m") == "open" and not b.allow("m")
    clock.now += 10
    assert b.allow("m")
    b.success("m")
    assert b.state("m") == "closed" and b.allow("m") and b.allow("m")


def test_success_resets_the_count() -> None:
    b = CircuitBreaker(failures=2, cooldown_s=1, clock=Clock())
    b.failure("m")
    b.success("m")
    b.failure("m")
    assert b.state("m") == "closed"


def test_a_probe_ended_by_the_clients_own_error_frees_the_slot() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=1, cooldown_s=1, clock=clock)
    b.failure("m")
    clock.now += 1
    assert b.allow("m")
    b.release_probe("m")
    assert b.allow("m")


def test_zero_disables() -> None:
    b = CircuitBreaker(failures=0, cooldown_s=1, clock=Clock())
    for _ in range(100):
        b.failure("m")
    assert b.allow("m") and b.state("m") == "closed"


def test_circuits_are_per_deployment() -> None:
    b = CircuitBreaker(failures=1, cooldown_s=5, clock=Clock())
    b.failure("a")
    assert not b.allow("a") and b.allow("b")
