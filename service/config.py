"""Settings read from the environment, in one place.

`Settings.from_env()` is what production uses; tests pass a mapping of overrides to
`create_app`. Every setting the CONTRACT names lives here, typed, with its default.
`create_app` stores the app's settings once; everything else reads them with `settings()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from flask import Flask, current_app

DEV_SECRET_KEY = "dev-only-not-secret"  # noqa: S105 - only accepted in debug/`make run`
# Signing keys guard staff sessions and every signed link: 32 bytes is 256 bits of HMAC
# key, and a shorter (typed, guessable) key could be brute-forced offline from one cookie.
MIN_SECRET_KEY_BYTES = 32


class ConfigError(RuntimeError):
    """The environment does not describe a runnable service."""


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    redis_url: str = ""
    secret_key: str = ""
    secret_key_fallbacks: tuple[str, ...] = ()
    # Keys the HMAC of suppressed addresses; must never change (defaults to SECRET_KEY).
    suppression_hash_key: str = ""
    public_url: str = "http://127.0.0.1:5000"
    sendgrid_api_key: str = ""
    sendgrid_api_host: str = "https://api.sendgrid.com"
    sendgrid_timeout: float = 10.0
    sendgrid_webhook_public_key: str = ""
    webhook_max_age_seconds: int = 600
    # This many blocked/deferred events for one address within the window suppress it.
    soft_bounce_limit: int = 5
    soft_bounce_window_seconds: int = 7 * 24 * 3600
    # The circuit breaker: once this many of a sending campaign's mails are delivered, a
    # hard-bounce or spam-report share of delivered above its rate pauses the campaign.
    breaker_min_sample: int = 500
    breaker_bounce_rate: float = 0.05
    breaker_complaint_rate: float = 0.002
    mail_from: str = "actionlist <noreply@example.org>"
    mail_reply_to: str = ""
    org_name: str = "actionlist"
    org_postal_address: str = ""
    form_allowed_origins: tuple[str, ...] = ()
    outbox_dir: str = ""
    proxy_hops: int = 0
    debug: bool = False
    testing: bool = False
    # Anti-abuse defaults: per-IP limits and per-address confirmation throttles.
    signup_rate_limit: str = "20/minute;200/hour"
    confirm_mail_min_interval_seconds: int = 600
    confirm_mail_max_per_day: int = 3
    confirm_token_max_age_seconds: int = 7 * 24 * 3600
    consent_text_version: str = "2026-11-v1"
    # Queue names may be prefixed so several test runs can share one Redis.
    queue_prefix: str = ""
    # Campaign sending: a claimed batch whose heartbeat is older than this lease is
    # presumed abandoned and requeued (the embedded SQLite mode; on PostgreSQL a dead
    # worker is found at once by its batch's advisory lock). Also how long a sending
    # campaign may show no activity before all its queued batches get jobs again.
    campaign_lease_seconds: int = 60
    campaign_batch_size: int = 1000
    # Local-hour delivery: the zone of a recipient whose time zone is unknown or invalid.
    default_timezone: str = "America/New_York"
    # Send-rate cap over all campaigns and workers (0: none), per `send_rate_window_seconds`
    # (60: per minute; a shorter window is a testing knob: the same cap per window).
    send_max_per_minute: int = 0
    send_rate_window_seconds: float = 60.0
    # Imports run as a job: a running import whose heartbeat (one per chunk) is
    # older than this lease was abandoned by a killed worker and is queued again.
    import_lease_seconds: int = 120
    # `worker.py` lowers its own CPU priority by this much (os.nice) at start, so that on a
    # machine shared with the web processes a long send leaves them the CPU they need.
    # 0 (the default) leaves it unchanged; 1–19 are valid.
    worker_niceness: int = 0
    # Every staff user must use two-factor authentication: one without it is sent to
    # enrolment after the password and can do nothing else until enrolled.
    staff_require_2fa: bool = False
    # Preferences links never expire, but downloading or erasing a person's data needs
    # one mailed within this many days (an older link offers to mail a new one).
    preferences_fresh_days: int = 2
    # Outgoing webhooks: receivers on loopback, private, link-local, multicast or
    # reserved addresses are refused unless this is on (tests, local setups).
    webhooks_allow_private: bool = False
    # A failed delivery is tried again after base, 2×base, 4×base ... seconds (at most
    # 6 h apart); an endpoint failing for `webhooks_disable_after_seconds` is disabled.
    webhooks_retry_base_seconds: float = 30.0
    webhooks_disable_after_seconds: int = 24 * 3600
    webhooks_timeout: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        debug = _bool(env.get("FLASK_DEBUG")) or _bool(env.get("ACTIONLIST_DEV"))
        return cls(
            database_url=env.get("DATABASE_URL", ""),
            redis_url=env.get("REDIS_URL", ""),
            secret_key=env.get("SECRET_KEY", ""),
            secret_key_fallbacks=_split(env.get("SECRET_KEY_FALLBACKS")),
            suppression_hash_key=env.get("SUPPRESSION_HASH_KEY", ""),
            public_url=env.get("PUBLIC_URL", cls.public_url).rstrip("/"),
            sendgrid_api_key=env.get("SENDGRID_API_KEY", ""),
            sendgrid_api_host=env.get("SENDGRID_API_HOST", cls.sendgrid_api_host).rstrip("/"),
            sendgrid_timeout=float(env.get("SENDGRID_TIMEOUT", cls.sendgrid_timeout)),
            sendgrid_webhook_public_key=env.get("SENDGRID_WEBHOOK_PUBLIC_KEY", ""),
            webhook_max_age_seconds=int(
                env.get("WEBHOOK_MAX_AGE_SECONDS", cls.webhook_max_age_seconds)
            ),
            soft_bounce_limit=int(env.get("SOFT_BOUNCE_LIMIT", cls.soft_bounce_limit)),
            soft_bounce_window_seconds=int(
                env.get("SOFT_BOUNCE_WINDOW_SECONDS", cls.soft_bounce_window_seconds)
            ),
            breaker_min_sample=int(env.get("BREAKER_MIN_SAMPLE", cls.breaker_min_sample)),
            breaker_bounce_rate=float(env.get("BREAKER_BOUNCE_RATE", cls.breaker_bounce_rate)),
            breaker_complaint_rate=float(
                env.get("BREAKER_COMPLAINT_RATE", cls.breaker_complaint_rate)
            ),
            mail_from=env.get("MAIL_FROM", cls.mail_from),
            mail_reply_to=env.get("MAIL_REPLY_TO", ""),
            org_name=env.get("ORG_NAME", cls.org_name),
            org_postal_address=env.get("ORG_POSTAL_ADDRESS", ""),
            form_allowed_origins=tuple(
                o.rstrip("/") for o in _split(env.get("FORM_ALLOWED_ORIGINS"))
            ),
            outbox_dir=env.get("OUTBOX_DIR", ""),
            proxy_hops=int(env.get("PROXY_HOPS", "0")),
            debug=debug,
            signup_rate_limit=env.get("SIGNUP_RATE_LIMIT", cls.signup_rate_limit),
            confirm_mail_min_interval_seconds=int(
                env.get("CONFIRM_MAIL_MIN_INTERVAL", cls.confirm_mail_min_interval_seconds)
            ),
            confirm_mail_max_per_day=int(
                env.get("CONFIRM_MAIL_MAX_PER_DAY", cls.confirm_mail_max_per_day)
            ),
            queue_prefix=env.get("QUEUE_PREFIX", ""),
            campaign_lease_seconds=int(
                env.get("CAMPAIGN_LEASE_SECONDS", cls.campaign_lease_seconds)
            ),
            campaign_batch_size=int(env.get("CAMPAIGN_BATCH_SIZE", cls.campaign_batch_size)),
            default_timezone=env.get("DEFAULT_TIMEZONE") or cls.default_timezone,
            send_max_per_minute=int(env.get("SEND_MAX_PER_MINUTE") or 0),
            send_rate_window_seconds=float(
                env.get("SEND_RATE_WINDOW_SECONDS") or cls.send_rate_window_seconds
            ),
            import_lease_seconds=int(
                env.get("IMPORT_LEASE_SECONDS", cls.import_lease_seconds)
            ),
            worker_niceness=_niceness(env.get("WORKER_NICENESS")),
            staff_require_2fa=_bool(env.get("STAFF_REQUIRE_2FA")),
            preferences_fresh_days=int(
                env.get("PREFERENCES_FRESH_DAYS", cls.preferences_fresh_days)
            ),
            webhooks_allow_private=_bool(env.get("WEBHOOKS_ALLOW_PRIVATE")),
            webhooks_retry_base_seconds=float(
                env.get("WEBHOOKS_RETRY_BASE_SECONDS", cls.webhooks_retry_base_seconds)
            ),
            webhooks_disable_after_seconds=int(
                env.get("WEBHOOKS_DISABLE_AFTER_SECONDS", cls.webhooks_disable_after_seconds)
            ),
            webhooks_timeout=float(env.get("WEBHOOKS_TIMEOUT", cls.webhooks_timeout)),
        )

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **overrides)

    def resolved(self, instance_path: str) -> Settings:
        """Fill defaults that depend on the instance folder and check the result."""
        database_url = self.database_url or f"sqlite:///{Path(instance_path) / 'actionlist.db'}"
        outbox_dir = self.outbox_dir or str(Path(instance_path) / "outbox")
        secret_key = self.secret_key
        if not secret_key:
            if not (self.debug or self.testing):
                raise ConfigError(
                    "SECRET_KEY is not set: production refuses to start without one "
                    "(use `make run` or FLASK_DEBUG=1 for development)"
                )
            secret_key = DEV_SECRET_KEY
        elif not (self.debug or self.testing):
            check_signing_key("SECRET_KEY", secret_key)
            for fallback in self.secret_key_fallbacks:
                check_signing_key("SECRET_KEY_FALLBACKS", fallback)
        if not 0 <= self.worker_niceness <= 19:  # (set through with_overrides)
            raise ConfigError(f"WORKER_NICENESS must be a whole number from 0 to 19, not "
                              f"{self.worker_niceness}")
        check_sending_limits(self)
        return replace(
            self,
            database_url=database_url,
            outbox_dir=outbox_dir,
            secret_key=secret_key,
            suppression_hash_key=self.suppression_hash_key or secret_key,
        )

    @property
    def signing_keys(self) -> list[str]:
        """Key list for itsdangerous: it signs with the last, verifies with all."""
        return [*self.secret_key_fallbacks, self.secret_key]

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_url)


def _niceness(value: str | None) -> int:
    """WORKER_NICENESS: a whole number from 0 to 19 (unset or empty: 0)."""
    if value is None or not value.strip():
        return 0
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"WORKER_NICENESS must be a whole number from 0 to 19, not "
                          f"{value[:40]!r}") from None
    if not 0 <= number <= 19:
        raise ConfigError(f"WORKER_NICENESS must be a whole number from 0 to 19, not {number}")
    return number


def check_sending_limits(conf: Settings) -> None:
    """DEFAULT_TIMEZONE names a zone; the send-rate cap and its window are not negative."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(conf.default_timezone)
    except (ValueError, OSError, KeyError) as exc:  # (ZoneInfoNotFoundError is a KeyError)
        raise ConfigError(
            f"DEFAULT_TIMEZONE is not a time zone: {conf.default_timezone!r}") from exc
    if conf.send_max_per_minute < 0:
        raise ConfigError("SEND_MAX_PER_MINUTE must be 0 (no cap) or more")
    if not 0 < conf.send_rate_window_seconds <= 3600:
        raise ConfigError("SEND_RATE_WINDOW_SECONDS must be more than 0 and at most 3600")


def check_signing_key(name: str, key: str) -> None:
    """Production refuses the development key and keys too short to resist brute force."""
    if key.strip() == DEV_SECRET_KEY:
        raise ConfigError(
            f"{name} is the development key, which is published: production refuses it. "
            'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )
    if len(key.strip().encode()) < MIN_SECRET_KEY_BYTES:
        raise ConfigError(
            f"{name} must be at least {MIN_SECRET_KEY_BYTES} bytes of random text: "
            "production refuses shorter keys. "
            'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
        )


def settings(app: Flask | None = None) -> Settings:
    """The settings of `app` (default: the current app), as `create_app` stored them."""
    found: Settings = (app or current_app).extensions["settings"]
    return found
