"""The sandbox's settings: task timing, the account, and fault injection."""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# The rates of Faults, in the order the fault decider draws them. New rates go
# at the end, so that adding one leaves every earlier rate's draws as they were.
RATE_FIELDS = (
    "http_500",
    "drop",
    "drop_after_create",
    "slow",
    "malformed_json",
    "task_fail",
    "expired_url",
    "http_429",
    "put_fail",
    "gateway_after_create",
    "callback_drop",
)
# The settings of Faults that are a number of seconds (any finite number >= 0).
SECONDS_FIELDS = ("slow_seconds", "retry_after_seconds")


@dataclass(frozen=True)
class Faults:
    """Rates (0..1) of each injected fault, and the seed that makes them repeatable."""

    seed: int = 0
    http_500: float = 0.0
    drop: float = 0.0
    drop_after_create: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 2.0
    malformed_json: float = 0.0
    task_fail: float = 0.0
    expired_url: float = 0.0
    # (v1.1) HTTP 429 with a Retry-After of this many seconds (rounded up to a
    # whole number, as the header takes), failed upload PUTs, and a gateway
    # that answers 502/504 after the service made the task.
    http_429: float = 0.0
    retry_after_seconds: float = 1.0
    put_fail: float = 0.0
    gateway_after_create: float = 0.0
    # A task's callback lost on the way: never sent, never retried.
    callback_drop: float = 0.0

    def __post_init__(self) -> None:
        for name in RATE_FIELDS:
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {name}={value!r} must be a number from 0 to 1")
        for name in SECONDS_FIELDS:
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name}={value!r} must be a number >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed={self.seed!r} must be an integer")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_faults(spec: str) -> Faults:
    """Parse ``"http_500=0.1,http_429=0.05,retry_after_seconds=2,seed=7"`` into Faults.

    An empty spec gives no faults. Raises ValueError naming the offending key or value.
    """
    known = {f.name for f in dataclasses.fields(Faults)}
    values: dict[str, int | float] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, raw = (s.strip() for s in part.partition("="))
        if not sep:
            raise ValueError(f"fault setting {part!r} is not KEY=VALUE")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown fault setting {key!r}; {hint}known: {', '.join(sorted(known))}"
            )
        values[key] = _parse_value(key, raw)
    return Faults(**values)  # type: ignore[arg-type]


def _parse_value(key: str, raw: str) -> int | float:
    try:
        if key == "seed":
            return int(raw)
        value = float(raw)
    except ValueError:
        kind = "an integer" if key == "seed" else "a number"
        raise ValueError(f"fault setting {key}={raw!r}: value must be {kind}") from None
    if key in RATE_FIELDS and not 0.0 <= value <= 1.0:
        raise ValueError(f"fault setting {key}={raw}: a rate must be from 0 to 1")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"fault setting {key}={raw}: value must be a finite number >= 0")
    return value


@dataclass(frozen=True)
class SandboxConfig:
    """How the emulated service behaves; every field has a fast, fault-free default."""

    task_seconds: float = 1.0
    task_jitter: float = 0.5
    credits: int = 100_000
    credit_cost: int = 10
    max_generating: int = 10
    url_ttl: float = 3600.0
    callback_url: str | None = None
    callback_retry_seconds: float = 300.0
    faults: Faults = field(default_factory=Faults)
    token: str | None = None
    # Answers carry ``X-HiFly-Sandbox: 1`` (SPEC §7). Off only to stand in, in tests,
    # for another implementation of the API, which clients must take as the real one.
    identify: bool = True

    def __post_init__(self) -> None:
        for name in ("task_seconds", "task_jitter", "url_ttl", "callback_retry_seconds"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name}={value!r} must be a number >= 0")
        if self.credit_cost < 0 or self.max_generating < 1:
            raise ValueError("credit_cost must be >= 0 and max_generating >= 1")
        if self.callback_url is not None:
            check_callback_url(self.callback_url)
        if self.token is not None and not self.token.strip():
            raise ValueError("token must not be empty (use None for the world's own token)")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (brackets allowed)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_callback_url(url: str) -> None:
    """Refuse callback URLs that are not plain http(s) on a loopback host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"callback_url {url!r} must be an http:// URL")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:  # (None: the scheme's own port)
        raise ValueError(f"callback_url {url!r}: its port must be from 1 to 65535")
    if not is_loopback_host(parts.hostname):
        raise ValueError(
            f"callback_url {url!r}: the sandbox only calls back to a loopback host "
            "(127.0.0.1, ::1, localhost)"
        )
