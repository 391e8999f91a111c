"""Outgoing mail: one Transport interface, SendGrid and outbox implementations, the sink."""
