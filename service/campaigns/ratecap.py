"""Send-rate caps: at most n mails handed to SendGrid per window, per campaign and overall.

A campaign's `max_per_minute` (IP warm-up) and the global `SEND_MAX_PER_MINUTE` are
sliding-window limits shared by every worker: a Redis sorted set per limit (one for the
campaign, one for everything) holds the grants of the last window, each a member
"<uuid>:<count>", and one Lua script checks both limits and records a grant atomically,
on Redis's own clock (`TIME`), so workers on several machines share one clock. Without
Redis (the embedded mode: one process) `LocalLimiter` does the same under a lock.

The window is `SEND_RATE_WINDOW_SECONDS` (60: "per minute"; a shorter window is a
testing knob: the same cap then holds per that many seconds).

Why a log of grants rather than a token bucket: a bucket that holds n tokens and refills
n per minute lets 2n through in some 60 s (a full bucket, then the refill), and the cap
is a promise about *every* minute.

What is counted is the moment a request may arrive at SendGrid, which is somewhere
between the grant and the end of the request: a grant is first recorded as in flight
(scored `now + FLIGHT_SECONDS`, so it counts while the request runs), and `settle`
re-stamps it with the moment the request ended. A later grant needs the earlier ones to
have *ended* a window ago, so no two requests more than the cap apart can arrive within
one window whatever the network's delays. A worker killed mid-request leaves its grant
counted for `FLIGHT_SECONDS` plus a window, never for ever.

`acquire` never waits: it grants what it can now (possibly fewer than asked: the caller
sends that many and keeps the rest) or 0 with how long to wait, and the batch job gives
its batch back and takes other work meanwhile (`sending._defer`), so an alert is never
stuck behind a capped newsletter.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from flask import current_app
from redis import Redis

from .. import config
from ..queue import task_queue

# How long a grant counts as in flight before its request ends (longer than any request:
# the SendGrid timeout is seconds).
FLIGHT_SECONDS = 120.0
# Bounds of the wait suggested to a caller that got nothing.
MIN_WAIT = 0.05

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local want = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local flight = tonumber(ARGV[3])
local member = ARGV[4]
local grant = want
local wait = 0
for i = 1, #KEYS do
  local cap = tonumber(ARGV[4 + i])
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
    local entries = redis.call('ZRANGE', KEYS[i], 0, -1, 'WITHSCORES')
    local used = 0
    for j = 1, #entries, 2 do
      used = used + tonumber(string.match(entries[j], ':(%d+)$'))
    end
    local free = cap - used
    if free < grant then grant = math.max(free, 0) end
    if free <= 0 and #entries > 0 then
      local w = tonumber(entries[2]) + window - now
      if w > wait then wait = w end
    end
  end
end
if grant > 0 then
  for i = 1, #KEYS do
    if tonumber(ARGV[4 + i]) > 0 then
      redis.call('ZADD', KEYS[i], now + flight, member .. ':' .. grant)
      redis.call('EXPIRE', KEYS[i], math.ceil(window + flight) + 60)
    end
  end
end
return {grant, tostring(wait)}
"""

_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now, ARGV[1])
end
return 1
"""


@dataclass(frozen=True)
class Grant:
    """`granted` mails may go now (0: none; then retry in `retry_after` seconds)."""

    granted: int
    retry_after: float = 0.0
    member: str = ""
    keys: tuple[str, ...] = ()


UNLIMITED = Grant(granted=-1)


class RedisLimiter:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._settle = redis.register_script(_SETTLE)

    def key(self, name: str) -> str:
        return f"{self.prefix}al:ratecap:{name}"

    def acquire(self, limits: dict[str, int], want: int, window: float) -> Grant:
        keys = [self.key(name) for name in limits]
        member = uuid.uuid4().hex
        granted, wait = self._acquire(
            keys=keys,
            args=[want, window, FLIGHT_SECONDS, member, *limits.values()],
        )
        granted = int(granted)
        if granted <= 0:
            return Grant(0, max(MIN_WAIT, min(float(wait), window)))
        return Grant(granted, 0.0, f"{member}:{granted}", tuple(keys))

    def settle(self, grant: Grant) -> None:
        if grant.keys:
            self._settle(keys=list(grant.keys), args=[grant.member])


class LocalLimiter:
    """The same sliding window in this process (the embedded mode has one process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, dict[str, tuple[float, int]]] = {}

    def acquire(self, limits: dict[str, int], want: int, window: float) -> Grant:
        member = uuid.uuid4().hex
        with self.lock:
            now = time.monotonic()
            grant, wait = want, 0.0
            for name, cap in limits.items():
                log = self.entries.setdefault(name, {})
                for key in [k for k, (score, _) in log.items() if score <= now - window]:
                    del log[key]
                free = cap - sum(count for _, count in log.values())
                grant = min(grant, max(free, 0))
                if free <= 0 and log:
                    wait = max(wait, min(score for score, _ in log.values()) + window - now)
            if grant <= 0:
                return Grant(0, max(MIN_WAIT, min(wait, window)))
            for name in limits:
                self.entries[name][f"{member}:{grant}"] = (now + FLIGHT_SECONDS, grant)
        return Grant(grant, 0.0, f"{member}:{grant}", tuple(limits))

    def settle(self, grant: Grant) -> None:
        with self.lock:
            now = time.monotonic()
            for name in grant.keys:
                log = self.entries.get(name, {})
                if grant.member in log:
                    log[grant.member] = (now, log[grant.member][1])


def _local() -> LocalLimiter:
    """The app's in-process limiter (the embedded mode: one app, one process)."""
    limiter: LocalLimiter = current_app.extensions.setdefault("ratecap", LocalLimiter())
    return limiter


def limits_for(campaign_id: int, max_per_minute: int | None) -> dict[str, int]:
    """The caps that apply to a campaign's mails ({} when none does)."""
    limits: dict[str, int] = {}
    if max_per_minute:
        limits[f"campaign:{campaign_id}"] = max_per_minute
    overall = config.settings().send_max_per_minute
    if overall > 0:
        limits["all"] = overall
    return limits


def acquire(campaign_id: int, max_per_minute: int | None, want: int) -> Grant:
    """Up to `want` mails of this campaign may go now (`UNLIMITED` when no cap applies)."""
    limits = limits_for(campaign_id, max_per_minute)
    if not limits or want <= 0:
        return UNLIMITED
    window = config.settings().send_rate_window_seconds
    tq = task_queue()
    if tq.redis is None:
        return _local().acquire(limits, want, window)
    return RedisLimiter(tq.redis, tq.prefix).acquire(limits, want, window)


def settle(grant: Grant) -> None:
    """The request of `grant` has ended: it counts from now for a window."""
    if not grant.keys:
        return
    tq = task_queue()
    if tq.redis is None:
        _local().settle(grant)
    else:
        RedisLimiter(tq.redis, tq.prefix).settle(grant)
