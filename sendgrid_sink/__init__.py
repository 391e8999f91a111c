"""A SendGrid-v3-compatible HTTP sink for development, tests and benchmarks.

The real `sendgrid` library works against it unchanged:
`SendGridAPIClient(key, host=sink.url)`. It accepts `POST /v3/mail/send`, validates the
body the way SendGrid does (`validation`), records what would have been delivered
(`records`), can inject faults (429, 5xx, connection resets, slow answers) and posts Event
Webhook batches (`events`) signed like SendGrid's (`signing`) back to the application. The
server and its `/_sink/` control endpoints are in `server`, the command line in `cli`
(`python -m sendgrid_sink` or `actionlist sendgrid-sink`).

An independent program: only the standard library plus `cryptography` (event signing) and
`click` (CLI) are used, nothing of the application.
"""

from .cli import sink_command
from .events import build_events
from .records import build_records, substitute
from .server import DEFAULT_FAULT_KINDS, FAULT_KINDS, FaultConfig, SinkServer
from .signing import (
    load_or_create_key_file,
    load_private_key,
    new_private_key,
    private_key_pem,
    public_key_b64,
    sign_payload,
    signature_headers,
)
from .validation import error_body, is_valid_email, validate_mail

__all__ = [
    "DEFAULT_FAULT_KINDS",
    "FAULT_KINDS",
    "FaultConfig",
    "SinkServer",
    "build_events",
    "build_records",
    "error_body",
    "is_valid_email",
    "load_or_create_key_file",
    "load_private_key",
    "new_private_key",
    "private_key_pem",
    "public_key_b64",
    "sign_payload",
    "signature_headers",
    "sink_command",
    "substitute",
    "validate_mail",
]
