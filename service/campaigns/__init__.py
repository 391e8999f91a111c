"""Campaigns: target (audience), render, send in batches, and recover after crashes.

- `lifecycle`  the state machine (draft → scheduled → sending ⇄ paused → sent | cancelled
               | failed) and the audit trail of who did what;
- `render`     Markdown/HTML + sandboxed Jinja → one rendered mail per language variant;
- `audience`   who a campaign reaches (lists ∩ segment − suppressed/bounced/complained);
- `sending`    freezing the audience into deliveries/batches and the batch jobs;
- `recovery`   requeueing batches abandoned by killed workers, starting overdue campaigns;
- `api`, `cli` the staff surface.
"""
