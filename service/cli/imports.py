"""`actionlist import FILE.csv --list SLUG [--confirmed --consent-note TEXT]` and
`actionlist export --list SLUG [--status …]`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from sqlalchemy.orm import Session

from .. import db
from ..audit import record
from ..imports.csvfile import FileError, rows, scan
from ..imports.export import CsvWriter, csv_blocks, export_rows
from ..imports.importer import CHUNK_SIZE, ChunkResult, Counts, ImportOptions, run_import
from ..lists import list_by_slug, list_slugs
from ..models import MailingList, SubscriptionStatus
from ..queue import task_queue
from ..subscribers import Evidence

ACTOR = "cli"


def _list(session: Session, slug: str) -> MailingList:
    found = list_by_slug(session, slug)
    if found is None:
        known = ", ".join(list_slugs(session))
        raise click.ClickException(f"No list {slug!r} (lists: {known}).")
    return found


def summary(counts: Counts) -> str:
    return (f"{counts.rows:,} rows: {counts.created:,} created, {counts.updated:,} updated, "
            f"{counts.skipped:,} skipped, {counts.refused:,} refused, "
            f"{counts.invalid:,} invalid; {counts.mails_queued:,} confirmation mails queued")


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--list", "list_slug", required=True, help="Slug of the list to subscribe to.")
@click.option("--confirmed", is_flag=True,
              help="Subscribe as confirmed: the organisation vouches for prior consent.")
@click.option("--consent-note", default="",
              help="With --confirmed: where that consent comes from (kept in the ledger).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV of the rows not imported (default: FILE.report.csv).")
@click.option("--chunk-size", type=click.IntRange(1, 50_000), default=CHUNK_SIZE,
              show_default=True, help="Rows per transaction.")
@click.option("--writers", type=click.IntRange(1, 8), default=2, show_default=True,
              help="PostgreSQL: chunks written at once, on as many connections.")
def import_command(file: Path, list_slug: str, confirmed: bool, consent_note: str,
                   report: Path | None, chunk_size: int, writers: int) -> None:
    """Import subscribers from a CSV file (UTF-8, header row naming the columns).

    Without --confirmed every new subscription is pending and gets a confirmation mail.
    Safe to run again: rows already imported change nothing.
    """
    consent_note = consent_note.strip()
    if confirmed and not consent_note:
        raise click.UsageError("--confirmed needs --consent-note saying where consent comes from.")
    if consent_note and not confirmed:
        raise click.UsageError("--consent-note goes with --confirmed.")
    session = db.session()
    mailing_list = _list(session, list_slug)
    try:
        with file.open("rb") as raw:
            found = scan(raw)
    except FileError as exc:
        raise click.ClickException(str(exc)) from None
    report = report or file.with_name(f"{file.stem}.report.csv")
    options = ImportOptions(
        list_id=mailing_list.id, confirmed=confirmed, consent_note=consent_note,
        evidence=Evidence(actor=ACTOR, endpoint="import", source=file.name),
        chunk_size=chunk_size,
    )
    done = Counts()
    started = time.monotonic()
    with report.open("w", encoding="utf-8", newline="") as report_file, \
            file.open(encoding="utf-8-sig", newline="") as text, \
            click.progressbar(length=found.data_lines, label=f"Importing into {list_slug}",
                              file=sys.stderr, show_pos=True, show_eta=True,
                              item_show_func=lambda rate: rate) as bar:
        writer = CsvWriter(report_file)
        writer.writerow(["line", "email", "reason"])

        def after_chunk(result: ChunkResult) -> None:
            writer.writerows([p.line, p.email, p.reason] for p in result.problems)
            report_file.flush()
            done.add(result.counts)
            rate = done.rows / max(time.monotonic() - started, 1e-6)
            bar.update(result.counts.rows, f"{rate:,.0f} rows/s")

        try:
            run_import(session, rows(text), options, after_chunk=after_chunk, writers=writers)
        except KeyboardInterrupt:
            click.echo(f"\nInterrupted. Chunks committed so far stay; {summary(done)}. "
                       "Run the same command again to finish.", err=True)
            raise click.exceptions.Exit(130) from None
        bar.update(max(0, found.data_lines - done.rows))  # blank lines count on the bar
    record(session, actor=ACTOR, action="subscribers.import", object_type="list",
           object_id=mailing_list.id,
           detail={"file": file.name, "confirmed": confirmed, **done.as_dict()})
    session.commit()
    elapsed = time.monotonic() - started
    click.echo(f"{summary(done)} in {elapsed:.1f}s ({done.rows / max(elapsed, 1e-6):,.0f} rows/s).")
    if done.refused or done.invalid:
        click.echo(f"Rows not imported, with line and reason: {report}")
    local = task_queue().local
    if local is not None and done.mails_queued:
        # Embedded mode: the confirmation jobs run in this process, so wait for them.
        click.echo("Sending the confirmation mails…", err=True)
        local.drain(timeout=24 * 3600)


@click.command("export")
@click.option("--list", "list_slug", required=True, help="Slug of the list.")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice([s.value for s in SubscriptionStatus]),
              help="Only these subscription statuses (repeatable; default all).")
def export_command(list_slug: str, statuses: tuple[str, ...]) -> None:
    """Write the list's subscribers as CSV to standard output (streamed)."""
    session = db.session()
    mailing_list = _list(session, list_slug)
    out = sys.stdout
    for block in csv_blocks(export_rows(session, mailing_list.id, statuses)):
        out.write(block)
    out.flush()
