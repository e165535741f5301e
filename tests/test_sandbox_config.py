"""Sandbox settings: the fault spec parser, value checks, loopback-only addresses."""

from __future__ import annotations

import pytest

from hifly_batch.sandbox import Faults, Sandbox, SandboxConfig, parse_faults
from hifly_batch.sandbox.config import is_loopback_host


def test_parse_faults_reads_every_key() -> None:
    spec = (
        "http_500=0.1,drop=0.05,drop_after_create=0.02,slow=0.05,slow_seconds=2,"
        "malformed_json=0.02,task_fail=0.05,expired_url=0.1,seed=7,"
        "http_429=0.5,retry_after_seconds=3,put_fail=0.1,gateway_after_create=0.02"
    )
    assert parse_faults(spec) == Faults(
        seed=7,
        http_500=0.1,
        drop=0.05,
        drop_after_create=0.02,
        slow=0.05,
        slow_seconds=2.0,
        malformed_json=0.02,
        task_fail=0.05,
        expired_url=0.1,
        http_429=0.5,
        retry_after_seconds=3.0,
        put_fail=0.1,
        gateway_after_create=0.02,
    )


def test_retry_after_may_be_zero_for_fast_tests() -> None:
    assert parse_faults("http_429=1,retry_after_seconds=0") == Faults(
        http_429=1.0, retry_after_seconds=0.0
    )


@pytest.mark.parametrize("spec", ["", " ", ",", "seed=0"])
def test_parse_faults_empty_is_no_faults(spec: str) -> None:
    assert parse_faults(spec) == Faults()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("http500=0.1", "unknown fault setting 'http500'"),
        ("drop=1.5", "from 0 to 1"),
        ("drop=-0.1", "from 0 to 1"),
        ("drop=lots", "must be a number"),
        ("seed=1.5", "must be an integer"),
        ("slow_seconds=-1", ">= 0"),
        ("slow_seconds=inf", "finite"),
        ("drop", "KEY=VALUE"),
        ("http429=0.1", "did you mean 'http_429'"),
        ("http_429=2", "from 0 to 1"),
        ("put_fail=-0.5", "from 0 to 1"),
        ("gateway_after_create=often", "must be a number"),
        ("retry_after_seconds=-1", ">= 0"),
        ("retry_after_seconds=nan", "finite"),
        ("retry_after_seconds=soon", "must be a number"),
    ],
)
def test_parse_faults_refuses_clearly(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        parse_faults(spec)


@pytest.mark.parametrize(
    "settings",
    [
        {"task_fail": 2.0},
        {"http_429": 1.5},
        {"put_fail": -1},
        {"gateway_after_create": True},
        {"retry_after_seconds": -1},
        {"retry_after_seconds": float("inf")},
        {"retry_after_seconds": "1"},
    ],
)
def test_faults_checks_values_when_built_directly(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings))):
        Faults(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    "url", ["http://192.168.1.2:9000/hook", "http://example.com/hook", "ftp://127.0.0.1/x", "x"]
)
def test_callback_url_must_be_loopback_http(url: str) -> None:
    with pytest.raises(ValueError, match="callback_url"):
        SandboxConfig(callback_url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999/", "http://127.0.0.1:0/", "http://[::1]:x/"]
)
def test_callback_url_needs_a_port_there_can_be(url: str) -> None:
    with pytest.raises(ValueError, match="its port must be from 1 to 65535"):
        SandboxConfig(callback_url=url)


def test_callback_url_on_loopback_is_fine() -> None:
    assert SandboxConfig(callback_url="http://127.0.0.1:9/hook").callback_url


def test_sandbox_refuses_a_public_host(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="loopback"):
        Sandbox(tmp_path, host="0.0.0.0")
    assert not (tmp_path / "world.db").exists()


def test_sandbox_on_a_public_host_when_allowed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sandbox = Sandbox(tmp_path, host="0.0.0.0", allow_non_loopback=True)
    sandbox.stop()
    assert (tmp_path / "world.db").exists()
