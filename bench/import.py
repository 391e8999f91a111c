"""Benchmark: `actionlist import --confirmed` of a large CSV into PostgreSQL.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/import.py [ROWS]          # default 1,000,000

Generates ROWS rows (email, first name, last name, ZIP, language and two extra columns;
1 % broken addresses, 0.5 % repeats of an earlier address in another case) into a CSV,
creates and migrates a fresh scratch PostgreSQL database, and runs the real command,
`actionlist import FILE --list newsletter --confirmed --consent-note …`, as a subprocess:
wall time, rows/s and the child's peak RSS. To show that memory does not grow with the
file, the first 100,000 rows are imported the same way into a second scratch database
first, and a 1-row file before that (the baseline RSS of the app itself). Then the
same big file is imported again (every row already there: nothing
changes). The reference, in the same run: PostgreSQL's own `COPY … FROM STDIN (FORMAT csv)`
of the same file into a plain table with no index, no validation and no consent ledger.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.harness import BIN, ROOT, scratch_database  # noqa: E402

FIRST = ["Ana", "Bob", "Carla", "Diego", "Eva", "Fran", "Gus", "Hana", "Ivan", "Julia"]
LAST = ["García", "Smith", "López", "Jones", "Nguyen", "Brown", "Díaz", "Kim", "Lee", "Ortiz"]
SMALL = 100_000
# The US has about 41,000 ZIP codes; a list repeats them.
ZIPS = [f"{10000 + (z * 2459) % 89999:05d}" for z in range(30_000)]


def generate(path: Path, rows: int) -> None:
    domains = [f"example{d}.org" for d in range(400)] + ["gmail.com", "yahoo.com"] * 50
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Email", "First Name", "Last Name", "ZIP", "Language",
                         "Member Since", "Chapter"])
        for i in range(rows):
            email = f"Reader.{i}@{domains[i % len(domains)]}"
            if i % 100 == 99:
                email = f"reader.{i}.{domains[i % len(domains)]}"  # no @: invalid
            elif i % 200 == 150:
                email = f"READER.{i - 100}@{domains[(i - 100) % len(domains)]}".upper()
            writer.writerow([email, FIRST[i % 10], LAST[(i // 10) % 10],
                             ZIPS[(i * 7919) % len(ZIPS)], "es" if i % 5 == 0 else "en",
                             str(2000 + i % 25), f"Chapter {i % 37}"])


def run_import(url: str, path: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, last output line) of one `actionlist import` subprocess."""
    env = {**os.environ, "DATABASE_URL": url,
           "SECRET_KEY": "bench-secret-key-used-only-by-the-benchmarks",
           "REDIS_URL": "", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "actionlist"), "import", str(path), "--list", "newsletter", "--confirmed",
         "--consent-note", "bench: members who opted in on paper"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"import failed ({proc.returncode}): {output}")
    lines = [line for line in output.splitlines() if "rows:" in line]
    return elapsed, usage.ru_maxrss / 1024, lines[-1] if lines else output.strip()


def copy_reference(url: str, path: Path) -> float:
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE copy_reference (email text, first_name text, last_name text,"
                     " zip text, language text, member_since text, chapter text)")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
            "COPY copy_reference FROM STDIN (FORMAT csv, HEADER true)"
        ) as copy, path.open("rb") as f:
            while block := f.read(1 << 20):
                copy.write(block)
        conn.commit()
        return time.perf_counter() - started


def counts(url: str) -> tuple[int, int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = tuple(int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                      for t in ("subscribers", "subscriptions", "consent_records"))
    engine.dispose()
    return found  # type: ignore[return-value]


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    folder = Path(os.environ.get("BENCH_TMP", "/tmp")) / f"actionlist-import-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    big, small = folder / "big.csv", folder / "small.csv"
    started = time.perf_counter()
    generate(big, rows)
    generate(small, min(rows, SMALL))
    print(f"generated {rows:,} rows ({big.stat().st_size / 1e6:.0f} MB) "
          f"in {time.perf_counter() - started:.1f}s")
    print("load before:", os.getloadavg())
    try:
        with scratch_database("import") as url:
            tiny = folder / "tiny.csv"
            tiny.write_text("email\r\nbaseline@example.net\r\n", encoding="utf-8")
            seconds, rss, _line = run_import(url, tiny)
            tiny.unlink()
            print(f"baseline: the same command on a 1-row file: {seconds:.1f}s, "
                  f"peak RSS {rss:.0f} MB (the app and its libraries)")
            seconds, rss, line = run_import(url, small)
            print(f"import {min(rows, SMALL):>9,} rows: {seconds:6.1f}s "
                  f"{min(rows, SMALL) / seconds:8,.0f} rows/s  peak RSS {rss:5.0f} MB  | {line}")
        with scratch_database("import") as url:
            seconds, rss, line = run_import(url, big)
            print(f"import {rows:>9,} rows: {seconds:6.1f}s {rows / seconds:8,.0f} rows/s  "
                  f"peak RSS {rss:5.0f} MB  | {line}")
            print("  subscribers, subscriptions, consent records:", counts(url))
            seconds, rss, line = run_import(url, big)
            print(f"again    {rows:>9,} rows: {seconds:6.1f}s {rows / seconds:8,.0f} rows/s  "
                  f"peak RSS {rss:5.0f} MB  | {line}")
            print("  subscribers, subscriptions, consent records:", counts(url))
            reference = copy_reference(url, big)
            print(f"reference: COPY of the same file into a plain table: {reference:.1f}s "
                  f"({rows / reference:,.0f} rows/s)")
    finally:
        for p in (big, small, *folder.glob("*.report.csv"), *folder.glob("tiny.csv")):
            p.unlink(missing_ok=True)
        folder.rmdir()
    print("load after:", os.getloadavg())


if __name__ == "__main__":
    main()
