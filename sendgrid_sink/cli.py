"""`actionlist sendgrid-sink` (or `python -m sendgrid_sink`): the sink as a program."""

from __future__ import annotations

import time

import click

from .server import DEFAULT_FAULT_KINDS, FAULT_KINDS, SinkServer
from .signing import load_or_create_key_file


@click.command("sendgrid-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option("--api-key", default=None, help="Only accept this key (default: any).")
@click.option("--record", "record_file", type=click.Path(dir_okay=False), default=None,
              help="Append accepted messages to FILE as JSON lines.")
@click.option("--no-content", is_flag=True, help="Record only ids, recipients and args.")
@click.option("--count-only", is_flag=True,
              help="Keep no record at all, only the counters of /_sink/stats (benchmarks).")
@click.option("--fault-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--faults", default=",".join(DEFAULT_FAULT_KINDS), show_default=True,
              help=f"Comma list among {','.join(FAULT_KINDS)}.")
@click.option("--slow-seconds", default=2.0, show_default=True, type=float)
@click.option("--webhook-url", default=None, help="Post signed Event Webhook batches here.")
@click.option("--webhook-interval", default=1.0, show_default=True, type=float)
@click.option("--open-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--click-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--bounce-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--spam-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="ECDSA P-256 PEM for webhook signing; created if missing.")
def sink_command(host: str, port: int, api_key: str | None, record_file: str | None,
                 no_content: bool, count_only: bool, fault_rate: float, faults: str,
                 slow_seconds: float,
                 webhook_url: str | None, webhook_interval: float, open_rate: float,
                 click_rate: float, bounce_rate: float, spam_rate: float,
                 key_file: str | None) -> None:
    """Run a SendGrid-v3-compatible sink (mail/send, faults, signed Event Webhook)."""
    kinds = [kind.strip() for kind in faults.split(",") if kind.strip()]
    if count_only and record_file:
        raise click.BadParameter("--count-only keeps no record to write", param_hint="--record")
    sink = SinkServer(
        host, port, api_key=api_key, record_path=record_file, keep_content=not no_content,
        record=not count_only,
        webhook_url=webhook_url, webhook_interval=webhook_interval,
        event_shares={"open": open_rate, "click": click_rate, "bounce": bounce_rate,
                      "spamreport": spam_rate},
        private_key_pem=load_or_create_key_file(key_file) if key_file else None,
    )
    try:
        sink.set_faults(fault_rate, kinds, slow_seconds=slow_seconds)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from exc
    sink.start()
    click.echo(f"SendGrid sink listening on {sink.url} (SendGridAPIClient host={sink.url})")
    click.echo(f"SENDGRID_WEBHOOK_PUBLIC_KEY={sink.public_key_b64}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        sink.stop()
