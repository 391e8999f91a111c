"""Signed links: one itsdangerous serializer per purpose.

Each purpose has its own salt, so a confirmation token never works as an unsubscribe
token. Serializers take the key list `[*SECRET_KEY_FALLBACKS, SECRET_KEY]`: they sign with
the last key and accept any of them, which is how keys are rotated. Payloads carry ids,
never an email address.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from itsdangerous import (
    BadSignature,
    SignatureExpired,
    Signer,
    TimestampSigner,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode, int_to_bytes
from itsdangerous.signer import HMACAlgorithm

from . import config
from .config import Settings


class Purpose(enum.StrEnum):
    confirm = "confirm"
    unsubscribe = "unsubscribe"
    preferences = "preferences"
    export = "export"
    undo = "undo"  # the receipt of one unsubscribe, carried by its page's undo button
    view = "view"  # a campaign mail's "view in browser" link (`view_token`)


SALTS = {purpose: f"actionlist.{purpose.value}.v1" for purpose in Purpose}

# How long an unsubscribe can be undone from its page (the life of its `undo` receipt).
UNDO_SECONDS = 30 * 60

# How long a token of each purpose stays valid. Unsubscribe and preference links in mail
# must keep working for as long as their key is in the key list (CAN-SPAM: >= 30 days),
# so they are not timed; rotating SECRET_KEY out of the list retires them.
MAX_AGE: dict[Purpose, int | None] = {
    Purpose.confirm: 7 * 24 * 3600,
    Purpose.unsubscribe: None,
    Purpose.preferences: None,
    Purpose.export: 24 * 3600,
    Purpose.undo: UNDO_SECONDS,
    Purpose.view: None,
}


class TokenError(Exception):
    """The token is tampered with, expired, or for another purpose."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def serializer(purpose: Purpose, settings: Settings | None = None) -> URLSafeTimedSerializer:
    return _serializer(purpose, tuple((settings or config.settings()).signing_keys))


class _KeyOnce(Signer):
    """A signer that derives its signing key once instead of once per token.

    `derive_key()` is itsdangerous's documented hook; keys given explicitly (verifying
    with an older key of the list) are derived as usual.
    """

    _signing_key: bytes | None = None

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        if self._signing_key is None:
            self._signing_key = super().derive_key()
        return self._signing_key


class _SigningKeySigner(_KeyOnce, TimestampSigner):
    """The timed signer of links, deriving its signing key once (`_KeyOnce`)."""


class _KeyedHMAC(HMACAlgorithm):
    """itsdangerous' default algorithm (HMAC-SHA1), keyed once per key.

    The stock one hands `hmac.new` a Python function as the digest, which takes hmac's
    slow path and sets the key up again for every token; here the keyed state is built
    once and copied for each value. The signatures are the same bytes.
    """

    def __init__(self) -> None:
        super().__init__(hashlib.sha1)
        self._keyed: dict[bytes, Any] = {}

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        keyed = self._keyed.get(key)
        if keyed is None:
            keyed = self._keyed[key] = hmac.new(key, digestmod=hashlib.sha1)
        mac = keyed.copy()
        mac.update(value)
        return bytes(mac.digest())


_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class _LinkSerializer(URLSafeTimedSerializer):
    """URLSafeTimedSerializer tuned for signing many small tokens (a campaign batch signs
    two links per recipient). Its tokens verify with the stock serializer and back:

    - it builds its signer once per salt instead of once per token (a signer holds only
      its keys and settings), and the signer derives its key once;
    - it encodes the JSON with one reusable encoder set up as itsdangerous' own
      (compact separators, `ensure_ascii=False`): `json.dumps` with options builds a new
      encoder per call, half the cost of a link token;
    - it does not try to zlib-compress payloads: the stock one compresses only when that
      makes the payload shorter, which it never does for a few ids (so link tokens are
      byte-identical); a long payload simply stays uncompressed;
    - its signer computes HMACs with `_KeyedHMAC`.
    """

    default_signer = _SigningKeySigner

    def __init__(self, keys: list[str], salt: str) -> None:
        super().__init__(keys, salt=salt, signer_kwargs={"algorithm": _KeyedHMAC()})
        self._signers: dict[str | bytes | None, Signer] = {}

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(_COMPACT_JSON.encode(obj).encode())


@functools.lru_cache(maxsize=64)
def _serializer(purpose: Purpose, keys: tuple[str, ...]) -> URLSafeTimedSerializer:
    """One per purpose and key list: a campaign batch signs two links per recipient, and
    building a serializer (it test-serializes `{}`) and a signer per link cost about as
    much as the signing itself."""
    return _LinkSerializer(list(keys), SALTS[purpose])


def make_token(purpose: Purpose, payload: dict[str, Any], settings: Settings | None = None) -> str:
    return str(serializer(purpose, settings).dumps(payload))


def read_token(
    purpose: Purpose, token: str, settings: Settings | None = None, max_age: int | None = None
) -> dict[str, Any]:
    """Return the payload, or raise `TokenError`."""
    return read_token_with_time(purpose, token, settings, max_age)[0]


def read_token_with_time(
    purpose: Purpose, token: str, settings: Settings | None = None, max_age: int | None = None
) -> tuple[dict[str, Any], datetime]:
    """Return the payload and when the token was signed, or raise `TokenError`."""
    age = max_age if max_age is not None else MAX_AGE[purpose]
    try:
        payload, signed_at = serializer(purpose, settings).loads(
            token, max_age=age, return_timestamp=True
        )
    except SignatureExpired as exc:
        raise TokenError("This link has expired.", expired=True) from exc
    except BadSignature as exc:
        raise TokenError("This link is not valid.") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), int):
        raise TokenError("This link is not valid.")
    return payload, signed_at


def signed_before(signed_at: datetime, created_at: datetime) -> bool:
    """Whether a token predates the row it names.

    SQLite reuses the highest row id after a delete, so once a subscriber is erased an
    old link could name a different, newer person with the same id. A token is never
    signed before its subscriber exists, so such a token is refused. (Token timestamps
    have whole-second precision.)
    """
    created = created_at if created_at.tzinfo is not None else created_at.replace(tzinfo=UTC)
    return signed_at < created.replace(microsecond=0)


def public_url(path: str, settings: Settings | None = None) -> str:
    return f"{(settings or config.settings()).public_url}{path}"


def confirm_url(subscriber_id: int, list_ids: list[int], settings: Settings | None = None) -> str:
    token = make_token(Purpose.confirm, {"s": subscriber_id, "l": sorted(list_ids)}, settings)
    return public_url(f"/confirm/{token}", settings)


def unsubscribe_url(
    subscriber_id: int,
    list_ids: list[int] | None = None,
    campaign_id: int | None = None,
    settings: Settings | None = None,
) -> str:
    payload: dict[str, Any] = {"s": subscriber_id, "l": sorted(list_ids or [])}
    if campaign_id is not None:
        payload["c"] = campaign_id
    token = make_token(Purpose.unsubscribe, payload, settings)
    return public_url(f"/unsubscribe/{token}", settings)


def preferences_url(subscriber_id: int, settings: Settings | None = None,
                    mailed_at: datetime | None = None) -> str:
    """A preferences link. One made now from an older link (the unsubscribe page links to
    the preferences) carries that link's `mailed_at` (`issued_at` reads it back): it proves
    control of the mailbox no more recently than the link it came from."""
    payload: dict[str, Any] = {"s": subscriber_id}
    if mailed_at is not None:
        payload["t"] = int(mailed_at.timestamp())
    token = make_token(Purpose.preferences, payload, settings)
    return public_url(f"/preferences/{token}", settings)


def issued_at(payload: dict[str, Any], signed_at: datetime) -> datetime:
    """When the mail that carried this link was sent: its own signing time, or the earlier
    time a link made from another link carries (`t`, never later than the signature)."""
    mailed = payload.get("t")
    if isinstance(mailed, int) and not isinstance(mailed, bool):
        try:
            return min(signed_at, datetime.fromtimestamp(mailed, UTC))
        except (OverflowError, OSError, ValueError):
            return signed_at
    return signed_at


def list_unsubscribe_headers(
    subscriber_id: int,
    list_ids: list[int] | None = None,
    campaign_id: int | None = None,
    settings: Settings | None = None,
) -> dict[str, str]:
    """The RFC 2369 / RFC 8058 headers for one recipient."""
    return one_click_headers(unsubscribe_url(subscriber_id, list_ids, campaign_id, settings))


def one_click_headers(unsubscribe: str) -> dict[str, str]:
    """RFC 2369 `List-Unsubscribe` with RFC 8058 one-click for an unsubscribe URL."""
    return {
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


class BatchLinks:
    """The unsubscribe and preferences links of many recipients, signed at one instant.

    A campaign batch signs two links per recipient, and `make_token` spends most of its
    time in per-call set-up (a timestamp, a JSON encoder, byte conversions). This signs
    the same bytes once per batch's worth of set-up: the payload JSON (ids only), the
    batch's timestamp, and the purpose's own `Signer.get_signature`. The tokens are
    exactly what `unsubscribe_url` and `preferences_url` give in the same second
    (tested), and `read_token` verifies them with the same serializer as any other.
    """

    def __init__(self, settings: Settings, list_ids: list[int], campaign_id: int) -> None:
        self._unsubscribe = serializer(Purpose.unsubscribe, settings).make_signer()
        self._preferences = serializer(Purpose.preferences, settings).make_signer()
        timestamp = self._unsubscribe.get_timestamp()  # type: ignore[attr-defined]
        self._stamp = b"." + base64_encode(int_to_bytes(int(timestamp)))
        self._payload_tail = (
            f',"l":[{",".join(str(int(i)) for i in sorted(list_ids))}],"c":{int(campaign_id)}}}'
        )
        self._unsubscribe_prefix = public_url("/unsubscribe/", settings)
        self._preferences_prefix = public_url("/preferences/", settings)
        # The view link's HMAC keyed once (what `view_signer` computes, without the
        # signer's per-call steps): the batch signs one per recipient.
        self._view_mac = hmac.new(view_signer(settings).derive_key(), digestmod=hashlib.sha1)
        self._view_prefix = f"{int(campaign_id)}."

    def _sign(self, signer: Signer, payload_json: str) -> str:
        value = base64_encode(payload_json) + self._stamp
        return (value + b"." + signer.get_signature(value)).decode("ascii")

    def unsubscribe_url(self, subscriber_id: int) -> str:
        payload = f'{{"s":{int(subscriber_id)}{self._payload_tail}'
        return self._unsubscribe_prefix + self._sign(self._unsubscribe, payload)

    def preferences_url(self, subscriber_id: int) -> str:
        payload = f'{{"s":{int(subscriber_id)}}}'
        return self._preferences_prefix + self._sign(self._preferences, payload)

    def view_tail(self, subscriber_id: int) -> str:
        """The recipient's part of their view token (after `<campaign>.`): the same
        characters `view_token` ends with."""
        subscriber = str(int(subscriber_id))
        mac = self._view_mac.copy()
        mac.update((self._view_prefix + subscriber).encode())
        return f"{subscriber}.{base64_encode(mac.digest()).decode('ascii')}"


class _ViewSigner(_KeyOnce):
    """The untimed signer of view links, deriving its signing key once (`_KeyOnce`)."""


@functools.lru_cache(maxsize=16)
def _view_signer(keys: tuple[str, ...]) -> Signer:
    return _ViewSigner(list(keys), salt=SALTS[Purpose.view], algorithm=_KeyedHMAC())


def view_signer(settings: Settings | None = None) -> Signer:
    return _view_signer(tuple((settings or config.settings()).signing_keys))


def view_token(campaign_id: int, subscriber_id: int, settings: Settings | None = None) -> str:
    """`<campaign>.<subscriber>.<signature>`: the "view in browser" link of one recipient's
    copy of a campaign.

    Unlike the other purposes it is not a JSON payload: every recipient of a campaign
    carries one, and the campaign's part is the same for all of them, so a mail's layout
    holds `/view/<campaign>.` and each recipient's substitution only the rest (about 35
    characters). Not timed, like the unsubscribe link it sits next to: it works for as long
    as its key is in the key list."""
    value = f"{int(campaign_id)}.{int(subscriber_id)}"
    return str(view_signer(settings).sign(value).decode("ascii"))


def read_view_token(token: str, settings: Settings | None = None) -> tuple[int, int]:
    """(campaign id, subscriber id) of a view token, or `TokenError`."""
    try:
        value = view_signer(settings).unsign(token.encode("ascii", "replace")).decode("ascii")
        campaign, subscriber = value.split(".")
        if not (campaign.isdigit() and subscriber.isdigit()) or len(value) > 40:
            raise ValueError(value)
        return int(campaign), int(subscriber)
    except (BadSignature, ValueError, UnicodeError) as exc:
        raise TokenError("This link is not valid.") from exc


def view_url(campaign_id: int, subscriber_id: int, settings: Settings | None = None) -> str:
    return public_url(f"/view/{view_token(campaign_id, subscriber_id, settings)}", settings)


def export_url(subscriber_id: int, settings: Settings | None = None) -> str:
    """A short-lived (MAX_AGE[export]) link that downloads the subscriber's data as JSON."""
    token = make_token(Purpose.export, {"s": subscriber_id}, settings)
    return public_url(f"/export/{token}", settings)


def list_ids_of(payload: dict[str, Any]) -> list[int]:
    """The list ids a token names (`l`); an empty list means every list."""
    lists = payload.get("l", [])
    if not isinstance(lists, list):
        return []
    return [i for i in lists if isinstance(i, int) and not isinstance(i, bool)]
