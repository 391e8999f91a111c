"""SendGrid Event Webhook: events → deliveries, suppressions, subscriptions, statistics."""
