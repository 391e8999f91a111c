"""Outgoing webhooks: the endpoints organisations register, and delivering the events
`service/outbound.py` writes to them (signed, retried with backoff, swept when a job is
lost). See docs/webhooks-out.md.
"""
