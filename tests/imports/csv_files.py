"""Import files written for the tests."""

from __future__ import annotations

import csv
import io
from pathlib import Path

HEADER = ["E-mail Address", "First Name", "Surname", "ZIP", "Language", "Member Since"]


def write_csv(path: Path, rows: list[list[str]], *, header: list[str] | None = None,
              encoding: str = "utf-8", bom: bool = False, newline: str = "\r\n") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(header or HEADER)
    writer.writerows(rows)
    data = buffer.getvalue().encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def people(n: int, *, start: int = 0, invalid_every: int = 0) -> list[list[str]]:
    """n rows under HEADER; every `invalid_every`-th one has a broken address."""
    rows = []
    for i in range(start, start + n):
        email = f"person{i}@example{i % 7}.org"
        if invalid_every and i % invalid_every == invalid_every - 1:
            email = f"person{i}.example.org"  # no @
        rows.append([email, f"First{i}", f"Last{i}", f"{94101 + i % 50:05d}",
                     "es" if i % 4 == 0 else "en", f"20{10 + i % 15}"])
    return rows
