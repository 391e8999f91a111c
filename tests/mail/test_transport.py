"""SendGridTransport against the sink over HTTP: how each SendGrid answer is classified."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sendgrid_sink import SinkServer
from service.mail.base import (
    AuthMailError,
    OutgoingMail,
    PermanentMailError,
    Personalization,
    TransientMailError,
)
from service.mail.sendgrid import SendGridTransport


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    with SinkServer(api_key="SG.right") as server:
        yield server


def mail(*emails: str) -> OutgoingMail:
    return OutgoingMail(subject="Hello", html="<p>Hi</p>", text="Hi",
                        from_email="alerts@example.org", from_name="Alerts",
                        personalizations=[Personalization(email=e) for e in emails])


def transport(sink: SinkServer, key: str = "SG.right") -> SendGridTransport:
    return SendGridTransport(key, sink.url, timeout=5)


def test_accepted_mail_returns_the_message_id(sink: SinkServer) -> None:
    result = transport(sink).send(mail("ana@example.org", "ben@example.org"))
    assert result.message_id
    assert sorted(m["to"][0]["email"] for m in sink.messages()) == [
        "ana@example.org", "ben@example.org"]


def test_429_is_transient_and_waits_until_the_rate_limit_reset(sink: SinkServer) -> None:
    sink.set_faults(1.0, ["429"], seed=1)
    with pytest.raises(TransientMailError) as info:
        transport(sink).send(mail("ana@example.org"))
    assert info.value.retry_after is not None and 0 <= info.value.retry_after <= 2
    assert "429" in str(info.value)


@pytest.mark.parametrize("kind", ["500", "502", "503", "reset"])
def test_server_errors_and_resets_are_transient_without_a_wait(sink: SinkServer,
                                                               kind: str) -> None:
    sink.set_faults(1.0, [kind], seed=1)
    with pytest.raises(TransientMailError) as info:
        transport(sink).send(mail("ana@example.org"))
    assert info.value.retry_after is None


def test_a_slow_answer_past_the_timeout_is_transient(sink: SinkServer) -> None:
    sink.set_faults(1.0, ["slow"], slow_seconds=2.0, seed=1)
    started = time.monotonic()
    with pytest.raises(TransientMailError):
        SendGridTransport("SG.right", sink.url, timeout=0.5).send(mail("ana@example.org"))
    assert time.monotonic() - started < 1.9


def test_a_refused_key_is_an_auth_error(sink: SinkServer) -> None:
    with pytest.raises(AuthMailError) as info:
        transport(sink, key="SG.wrong").send(mail("ana@example.org"))
    assert "401" in str(info.value)
    assert sink.messages() == []


def test_a_400_names_the_rejected_personalization(sink: SinkServer) -> None:
    with pytest.raises(PermanentMailError) as info:
        transport(sink).send(mail("ana@example.org", "not-an-address", "ben@example.org"))
    assert list(info.value.bad_personalizations) == [1]
    assert info.value.bad_personalizations[1]
    assert sink.messages() == []
