"""The SendGrid sink, driven over real HTTP by the real `sendgrid` library and `requests`."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import python_http_client
import requests
from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import Mail

from sendgrid_sink import SinkServer, load_or_create_key_file


@pytest.fixture
def server() -> Iterator[SinkServer]:
    with SinkServer() as sink:
        yield sink


def client(sink: SinkServer, key: str = "SG.test") -> Any:
    return SendGridAPIClient(key, host=sink.url).client


def body(*emails: str, **extra: Any) -> dict[str, Any]:
    mail: dict[str, Any] = {
        "personalizations": [{"to": [{"email": e}]} for e in emails],
        "from": {"email": "alerts@example.org", "name": "Alerts"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi"},
                    {"type": "text/html", "value": "<p>Hi</p>"}],
    }
    mail.update(extra)
    return mail


def errors_of(exc: http_errors.HTTPError) -> list[dict[str, Any]]:
    return json.loads(exc.body)["errors"]


def rejected(sink: SinkServer, request_body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(http_errors.BadRequestsError) as info:
        client(sink).mail.send.post(request_body=request_body)
    assert sink.messages() == []
    return errors_of(info.value)


def test_valid_mail_with_substitutions_is_recorded_per_personalization(server):
    request_body = body(
        "ana@example.org", "ben@example.org",
        subject="Hello -name-",
        content=[{"type": "text/plain", "value": "Hi -name-, see -link-"},
                 {"type": "text/html", "value": "<p>Hi -name-, <a href='-link-'>x</a></p>"}],
        headers={"List-Unsubscribe": "<https://example.org/u>"},
        custom_args={"campaign": "7"},
        categories=["newsletter"],
    )
    request_body["personalizations"][0].update(
        substitutions={"-name-": "Ana", "-link-": "https://example.org/a"},
        custom_args={"subscriber": "1"}, headers={"X-Seq": "1"})
    request_body["personalizations"][1].update(
        substitutions={"-name-": "Ben", "-link-": "https://example.org/b"})
    request_body["personalizations"][1]["to"][0]["name"] = "Ben B"

    response = client(server).mail.send.post(request_body=request_body)

    assert response.status_code == 202 and response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    ana, ben = server.messages()
    assert ana["message_id"] == ben["message_id"] == message_id
    assert ana["to"] == [{"email": "ana@example.org", "name": None}]
    assert ben["to"] == [{"email": "ben@example.org", "name": "Ben B"}]
    assert ana["subject"] == "Hello Ana" and ben["subject"] == "Hello Ben"
    assert ana["text"] == "Hi Ana, see https://example.org/a"
    assert ben["html"] == "<p>Hi Ben, <a href='https://example.org/b'>x</a></p>"
    assert ana["headers"] == {"List-Unsubscribe": "<https://example.org/u>", "X-Seq": "1"}
    assert ana["custom_args"] == {"campaign": "7", "subscriber": "1"}
    assert ben["custom_args"] == {"campaign": "7"}
    assert ana["from"] == {"email": "alerts@example.org", "name": "Alerts"}
    assert ana["categories"] == ["newsletter"] and ana["send_at"] is None
    assert isinstance(ana["received_at"], float)
    assert server.stats() == {"requests": 1, "accepted_requests": 1, "personalizations": 2,
                              "rejected": 0, "faults": 0}


def test_mail_helper_through_sg_send(server):
    sg = SendGridAPIClient("SG.test", host=server.url)
    response = sg.send(Mail(from_email="alerts@example.org", to_emails="ana@example.org",
                            subject="Hi", html_content="<b>Hi</b>"))
    assert response.status_code == 202
    [record] = server.messages()
    assert record["html"] == "<b>Hi</b>" and record["text"] is None


def test_missing_or_wrong_authorization_is_401():
    with SinkServer(api_key="SG.right") as sink:
        no_auth = python_http_client.Client(host=sink.url, version=3)
        with pytest.raises(http_errors.UnauthorizedError) as info:
            no_auth.mail.send.post(request_body=body("ana@example.org"))
        assert errors_of(info.value)[0]["message"] == (
            "The provided authorization grant is invalid, expired, or revoked")
        with pytest.raises(http_errors.UnauthorizedError):
            client(sink, "SG.wrong").mail.send.post(request_body=body("ana@example.org"))
        assert client(sink, "SG.right").mail.send.post(
            request_body=body("ana@example.org")).status_code == 202
        assert sink.stats()["rejected"] == 2


def test_more_than_1000_personalizations_is_400(server):
    errors = rejected(server, body(*(f"u{i}@example.org" for i in range(1001))))
    assert [e["field"] for e in errors] == ["personalizations", "personalizations"]


def test_1000_personalizations_are_accepted(server):
    response = client(server).mail.send.post(
        request_body=body(*(f"u{i}@example.org" for i in range(1000))))
    assert response.status_code == 202
    assert server.stats()["personalizations"] == 1000


def test_duplicate_address_is_400_naming_the_second_one(server):
    errors = rejected(server, body("ana@example.org", "ben@example.org", "ANA@example.org"))
    [error] = errors
    assert error["field"] == "personalizations.2.to.0.email"
    assert "uplicate" in error["message"] and error["help"] is None


def test_one_invalid_address_is_named_by_its_index(server):
    emails = [f"u{i}@example.org" for i in range(6)]
    emails[3] = "not an address@example"
    errors = rejected(server, body(*emails))
    assert [e["field"] for e in errors] == ["personalizations.3.to.0.email"]


@pytest.mark.parametrize("bad", ["no-at-sign.example.org", "a@b@example.org", "@example.org",
                                 "ana@localhost", "ana @example.org", "a" * 250 + "@example.org"])
def test_invalid_address_shapes(server, bad):
    assert [e["field"] for e in rejected(server, body(bad))] == ["personalizations.0.to.0.email"]


def test_name_with_comma_is_400(server):
    request_body = body("ana@example.org")
    request_body["personalizations"][0]["to"][0]["name"] = "Perez, Ana"
    assert [e["field"] for e in rejected(server, request_body)] == [
        "personalizations.0.to.0.name"]


def test_non_string_substitution_is_400(server):
    request_body = body("ana@example.org", "ben@example.org")
    request_body["personalizations"][1]["substitutions"] = {"-n-": 5}
    assert [e["field"] for e in rejected(server, request_body)] == [
        "personalizations.1.substitutions"]


def test_every_problem_is_listed(server):
    request_body = body("ana@example.org", categories=[str(i) for i in range(11)],
                        send_at=int(time.time()) + 73 * 3600, custom_args={"n": 1})
    del request_body["subject"]
    request_body["from"] = {"email": "nobody"}
    request_body["content"] = [{"type": "text/html", "value": "h"},
                               {"type": "text/plain", "value": "t"}]
    fields = {e["field"] for e in rejected(server, request_body)}
    assert fields == {"from.email", "subject", "content", "categories", "send_at",
                      "custom_args"}


def test_subject_may_come_from_every_personalization(server):
    request_body = body("ana@example.org")
    del request_body["subject"]
    request_body["personalizations"][0]["subject"] = "Own"
    assert client(server).mail.send.post(request_body=request_body).status_code == 202
    assert server.messages()[0]["subject"] == "Own"


def test_sandbox_mode_answers_200_and_records_nothing(server):
    request_body = body("ana@example.org", mail_settings={"sandbox_mode": {"enable": True}})
    assert client(server).mail.send.post(request_body=request_body).status_code == 200
    assert server.messages() == []


def test_fault_429_carries_rate_limit_reset(server):
    server.set_faults(1.0, ["429"], seed=1)
    with pytest.raises(http_errors.TooManyRequestsError) as info:
        client(server).mail.send.post(request_body=body("ana@example.org"))
    reset = float(info.value.headers["X-RateLimit-Reset"])
    assert 0 <= reset - time.time() <= 2
    assert "Retry-After" not in info.value.headers
    assert errors_of(info.value)[0]["message"]
    assert server.messages() == [] and server.stats()["faults"] == 1


def test_fault_5xx(server):
    server.set_faults(1.0, ["503"])
    with pytest.raises(http_errors.ServiceUnavailableError):
        client(server).mail.send.post(request_body=body("ana@example.org"))
    assert server.messages() == []


def test_fault_reset_drops_the_connection(server):
    server.set_faults(1.0, ["reset"])
    with pytest.raises((urllib.error.URLError, http.client.RemoteDisconnected,
                        ConnectionResetError)):
        client(server).mail.send.post(request_body=body("ana@example.org"))
    server.set_faults(0, [])
    assert client(server).mail.send.post(request_body=body("ana@example.org")).status_code == 202
    assert server.stats()["faults"] == 1 and len(server.messages()) == 1


def test_fault_slow_then_normal(server):
    server.set_faults(1.0, ["slow"], slow_seconds=0.3)
    started = time.monotonic()
    assert client(server).mail.send.post(request_body=body("ana@example.org")).status_code == 202
    assert time.monotonic() - started >= 0.3


def test_seeded_faults_are_deterministic(server):
    def outcomes() -> list[int]:
        server.set_faults(0.5, ["500"], seed=42)
        result = []
        for _ in range(12):
            try:
                result.append(client(server).mail.send.post(
                    request_body=body("ana@example.org")).status_code)
            except http_errors.InternalServerError:
                result.append(500)
        return result

    first = outcomes()
    assert first == outcomes() and 500 in first and 202 in first


def test_keep_content_false_stores_no_content():
    with SinkServer(keep_content=False) as sink:
        request_body = body("ana@example.org", custom_args={"campaign": "7"})
        client(sink).mail.send.post(request_body=request_body)
        [record] = sink.messages()
        assert set(record) == {"message_id", "to", "custom_args", "headers"}
        assert record["custom_args"] == {"campaign": "7"}


def test_record_false_counts_only():
    with SinkServer(record=False) as sink:
        client(sink).mail.send.post(request_body=body("ana@example.org", "ben@example.org"))
        assert sink.messages() == [] and sink.stats()["personalizations"] == 2


def test_record_file_gets_json_lines(tmp_path):
    path = tmp_path / "sent.jsonl"
    with SinkServer(record_path=path) as sink:
        client(sink).mail.send.post(request_body=body("ana@example.org", "ben@example.org"))
        lines = path.read_text().splitlines()
    assert [json.loads(line)["to"][0]["email"] for line in lines] == [
        "ana@example.org", "ben@example.org"]


def test_control_endpoints_over_http(server):
    client(server).mail.send.post(request_body=body("ana@example.org"))
    with requests.Session() as http:
        assert [m["to"][0]["email"] for m in http.get(f"{server.url}/_sink/messages").json()] \
            == ["ana@example.org"]
        assert http.get(f"{server.url}/_sink/stats").json()["accepted_requests"] == 1
        assert http.delete(f"{server.url}/_sink/messages").status_code == 204
        assert http.get(f"{server.url}/_sink/messages").json() == []
        assert http.get(f"{server.url}/_sink/stats").json() == {
            "requests": 0, "accepted_requests": 0, "personalizations": 0, "rejected": 0,
            "faults": 0}
        assert http.get(f"{server.url}/_sink/public-key").json() == {
            "public_key": server.public_key_b64}
        answer = http.post(f"{server.url}/_sink/faults",
                           json={"rate": 1, "kinds": ["500"], "seed": 1})
        assert answer.status_code == 200
        assert http.post(f"{server.url}/_sink/faults",
                         json={"rate": 1, "kinds": ["teapot"]}).status_code == 400
        # keep-alive: the same connection serves a mail/send and answers 500 as configured
        sent = http.post(f"{server.url}/v3/mail/send", json=body("ana@example.org"),
                         headers={"Authorization": "Bearer SG.test"})
        assert sent.status_code == 500 and sent.json()["errors"]
        http.post(f"{server.url}/_sink/faults", json={"rate": 0})
        sent = http.post(f"{server.url}/v3/mail/send", json=body("ana@example.org"),
                         headers={"Authorization": "Bearer SG.test"})
        assert sent.status_code == 202 and sent.content == b""
        assert http.post(f"{server.url}/v3/mail/send", data=b"[1, 2",
                         headers={"Authorization": "Bearer SG.test"}).status_code == 400


def test_oversized_body_is_413(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.putrequest("POST", "/v3/mail/send")
        connection.putheader("Authorization", "Bearer SG.test")
        connection.putheader("Content-Length", str(31 * 1024 * 1024))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        response.read()
    finally:
        connection.close()


def test_key_file_keeps_the_public_key_stable(tmp_path):
    key_file = tmp_path / "sink-key.pem"
    pem = load_or_create_key_file(key_file)
    assert load_or_create_key_file(key_file) == pem
    assert (SinkServer(private_key_pem=pem).public_key_b64
            == SinkServer(private_key_pem=key_file.read_text()).public_key_b64)


# --- Event Webhook -----------------------------------------------------------------------


class Collector:
    """A tiny HTTP server that keeps every POST it receives."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                collector.posts.append((dict(self.headers), raw))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/events"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def events(self) -> list[dict[str, Any]]:
        return [event for _, raw in self.posts for event in json.loads(raw)]


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.close()


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_signed_events_are_posted_back(collector):
    with SinkServer(webhook_url=collector.url, webhook_interval=0.05,
                    event_shares={"open": 1.0, "click": 1.0}) as sink:
        request_body = body("ana@example.org", "ben@example.org",
                            custom_args={"campaign": "7"},
                            content=[{"type": "text/html",
                                      "value": "<a href='https://example.org/-id-'>go</a>"}])
        request_body["personalizations"][0].update(custom_args={"subscriber": "1"},
                                                   substitutions={"-id-": "ana"})
        message_id = client(sink).mail.send.post(
            request_body=request_body).headers["X-Message-Id"]
        wait_for(lambda: len(collector.events()) == 8)
        public_key = sink.public_key_b64

    events = collector.events()
    by_kind = {(e["email"], e["event"]): e for e in events}
    assert set(by_kind) == {(email, kind) for email in ("ana@example.org", "ben@example.org")
                            for kind in ("processed", "delivered", "open", "click")}
    assert by_kind["ana@example.org", "click"]["url"] == "https://example.org/ana"
    assert by_kind["ana@example.org", "delivered"]["subscriber"] == "1"
    assert all(e["campaign"] == "7" for e in events)
    assert "subscriber" not in by_kind["ben@example.org", "open"]
    assert all(e["sg_message_id"].startswith(message_id + ".") for e in events)
    assert len({e["sg_event_id"] for e in events}) == 8
    assert all(isinstance(e["timestamp"], int) for e in events)

    webhook = EventWebhook()
    key = webhook.convert_public_key_to_ecdsa(public_key)
    for headers, raw in collector.posts:
        signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
        timestamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
        assert abs(int(timestamp) - time.time()) < 60
        assert webhook.verify_signature(raw.decode(), signature, timestamp, key)
        tampered = bytearray(raw)
        tampered[len(tampered) // 2] ^= 0x01
        assert not webhook.verify_signature(tampered.decode(), signature, timestamp, key)
        assert not webhook.verify_signature(raw.decode(), signature, str(int(timestamp) + 1), key)


def test_bounces_replace_delivery_and_flush_is_synchronous(collector):
    with SinkServer(webhook_url=collector.url, webhook_interval=60,
                    event_shares={"bounce": 1.0}) as sink:
        client(sink).mail.send.post(request_body=body("ana@example.org"))
        assert sink.flush_events() == 2
        kinds = [e["event"] for e in collector.events()]
        assert kinds == ["processed", "bounce"]
        assert collector.events()[1]["reason"] == "550 5.1.1 mailbox does not exist"


def test_failed_posts_are_retried():
    with SinkServer(webhook_url="http://127.0.0.1:9/unreachable", webhook_interval=60) as sink:
        client(sink).mail.send.post(request_body=body("ana@example.org"))
        assert sink.flush_events() == 0
        assert sink.webhook_stats()["pending"] == 2
        collector = Collector()
        try:
            sink.webhook_url = collector.url
            assert sink.flush_events() == 2
            assert [e["event"] for e in collector.events()] == ["processed", "delivered"]
        finally:
            collector.close()


def test_large_requests_post_events_in_batches_of_1000(collector):
    with SinkServer(webhook_url=collector.url, webhook_interval=60, record=False) as sink:
        client(sink).mail.send.post(request_body=body(*(f"u{i}@example.org" for i in range(600))))
        wait_for(lambda: len(collector.events()) >= 1000)  # 1000 pending trigger a post
        sink.flush_events()
    assert [len(json.loads(raw)) for _, raw in collector.posts] == [1000, 200]


def test_cli_command_is_a_click_command():
    from click.testing import CliRunner

    from sendgrid_sink.cli import sink_command

    assert sink_command.name == "sendgrid-sink"
    result = CliRunner().invoke(sink_command, ["--help"])
    assert result.exit_code == 0 and "--webhook-url" in result.output



def test_cli_count_only_keeps_counters_and_no_records():
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "sendgrid_sink", "--port", str(port),
                             "--count-only"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"{url}/_sink/stats", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        SendGridAPIClient("SG.test", host=url).client.mail.send.post(
            request_body=body("ana@example.org", "ben@example.org"))
        assert requests.get(f"{url}/_sink/messages", timeout=5).json() == []
        stats = requests.get(f"{url}/_sink/stats", timeout=5).json()
        assert stats["accepted_requests"] == 1 and stats["personalizations"] == 2
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_count_only_refuses_a_record_file(tmp_path):
    from click.testing import CliRunner

    from sendgrid_sink.cli import sink_command

    result = CliRunner().invoke(sink_command, ["--count-only", "--record", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--count-only" in result.output


def test_the_sink_is_a_program_of_its_own():
    """`sendgrid_sink` imports nothing of the application (nor Flask, SQLAlchemy, RQ)."""
    import subprocess
    import sys

    code = "import json, sys, sendgrid_sink; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    assert "sendgrid_sink" in loaded
    assert not loaded & {"service", "flask", "sqlalchemy", "rq", "redis", "sendgrid"}
