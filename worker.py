"""Start an RQ worker (with the scheduler) on the app's queues, in priority order.

    python worker.py            # serves transactional, alerts, newsletters, default
    python worker.py --burst    # exits when the queues are empty

Run as many as you like, on as many machines as you like: every job is safe to run
twice and campaign batches are claimed with a conditional UPDATE.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os

from service import config, create_app, db, settle_process
from service.queue import task_queue

log = logging.getLogger("worker")


def recovery_pass(at_start: bool = False) -> None:
    """What killed workers left: campaign batches, imports, outgoing webhook deliveries
    (each on its own); the Event Webhook's keys older than SendGrid's retries, and
    outgoing webhook events every endpoint took more than 30 days ago.
    `at_start`: every due delivery whose job is not in Redis is lost."""
    from service.campaigns.recovery import recover
    from service.imports.recovery import recover_imports
    from service.jobs.outgoing import prune, sweep, sweep_at_start
    from service.jobs.webhooks import prune_event_keys

    for step in (recover, recover_imports, sweep_at_start if at_start else sweep,
                 prune_event_keys, prune):
        try:
            step()
        except Exception:  # periodic: the next pass tries again
            db.session().rollback()
            log.exception("recovery step %s failed", step.__name__)


def watch_pass() -> None:
    """Every few seconds: the signups' confirmation mails that are due, the batches of dead
    workers, and batches and outgoing webhook deliveries whose job was lost."""
    from service.campaigns.recovery import watch
    from service.jobs.outgoing import sweep
    from service.jobs.subscriptions import send_due_confirmations

    for step in (send_due_confirmations, watch, sweep):
        try:
            step()
        except Exception:  # periodic: the next pass tries again
            db.session().rollback()
            log.exception("watch step %s failed", step.__name__)


def lower_priority(niceness: int) -> None:
    """Lower this process's CPU priority by `niceness` (WORKER_NICENESS; 0: unchanged)."""
    if niceness > 0:
        os.nice(niceness)
        log.info("worker niceness raised by %d (now %d)", niceness, os.nice(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
    args = parser.parse_args()
    app = create_app()
    # Before anything forks (the scheduler, the render pool): they inherit it.
    lower_priority(config.settings(app).worker_niceness)
    with app.app_context():
        from service.campaigns.recovery import WATCH_SECONDS, schedule_watchdog

        recovery_pass(at_start=True)  # what a killed worker left, what fell due meanwhile
        schedule_watchdog()
        # RQ forks its scheduler from this process: close every database connection first
        # so the child inherits none (an inherited socket would outlive this process and
        # could keep a transaction, and its locks, open).
        database = app.extensions["db"]
        database.scoped.remove()
        database.engine.dispose()
        # Every lease period (idle or not) each worker runs the recovery pass itself and
        # takes over RQ's scheduler if its holder died: neither waits for the scheduler.
        # Every WATCH_SECONDS (between jobs, and while idle) it runs the cheap part of it:
        # a dead worker's batch goes on within seconds.
        settings = config.settings(app)
        lease = min(settings.campaign_lease_seconds, settings.import_lease_seconds)
        # The ZIP table once, here, rather than in every forked job; the loaded app out of
        # the garbage collector's passes. Jobs allocate in bulk (an Event Webhook chunk
        # parses 20,000 events): a young generation of 50,000 objects instead of 700 runs a
        # few passes per chunk instead of dozens (the chunk's Python work 129.5 -> 116.5
        # ms, `docs/benchmarks.md`).
        settle_process()
        gc.set_threshold(50_000, 10, 10)
        worker = task_queue().make_worker(name=args.name, maintenance=recovery_pass,
                                          every=max(5, lease), watch=watch_pass,
                                          watch_every=WATCH_SECONDS)
        worker.work(burst=args.burst, with_scheduler=True)


if __name__ == "__main__":
    main()
