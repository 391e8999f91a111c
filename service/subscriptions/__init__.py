"""Public signup, confirmation, preferences and unsubscribe."""
