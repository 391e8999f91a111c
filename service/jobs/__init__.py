"""Background jobs: the functions RQ (or the in-process worker) runs.

A job takes ids, reloads state through its own session and calls the domain; it holds no
rules of its own beyond that. Domain modules enqueue jobs by dotted name (for example
`"service.jobs.campaigns.send_batch"`) through `service.queue.enqueue_after_commit`, so
no domain module ever imports this package: the dependencies point one way, from jobs to
the domain. Every job is safe to run twice.
"""
