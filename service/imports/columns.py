"""Column choices for an upload: what the importer would guess, and staff overriding it.

The admin's import page shows each column of the file's header with the field the
importer would read it as (`guess`), and lets staff change it. Their choice is applied
by rewriting the header line of the upload as it is stored (`with_header`), to names the
importer reads back unambiguously: the importer itself stays the one implementation,
whether the file came from the CLI, the API or the admin.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import BinaryIO

from .csvfile import BLOCK, EXPORT_ONLY, FIELD_OF, FileError, header_key, read_header

# What a column may become, in the order the admin lists them.
CHOICES: dict[str, str] = {
    "email": "Email address",
    "first_name": "First name",
    "last_name": "Last name",
    "name": "Full name (split into first and last)",
    "postal_code": "Postal code",
    "language": "Language",
    "state": "US state",
    "tags": "Tags (separated by , or ;)",
    "status": "Status (unsubscribed rows are not re-added)",
    "attribute": "Keep as an attribute",
    "ignore": "Ignore",
}
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class Preview:
    header: list[str]
    guesses: list[str]
    sample: list[list[str]]


def guess(name: str) -> str:
    """The field the importer reads a column of this name as (a key of CHOICES)."""
    key = header_key(name)
    if not key or key in EXPORT_ONLY:
        return "ignore"
    return FIELD_OF.get(key, "attribute")


def preview(head: bytes) -> Preview:
    """Header, guesses and a few rows from the first bytes of a file (FileError if unreadable)."""
    header = read_header(head)
    text = head.decode("utf-8-sig", errors="ignore")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    sample: list[list[str]] = []
    try:
        for cells in reader:
            if len(sample) >= SAMPLE_ROWS:
                break
            sample.append([cell[:80] for cell in cells[: len(header)]])
    except csv.Error:
        pass  # the slice may end inside a quoted cell: the rows read so far will do
    return Preview(header=header, guesses=[guess(h) for h in header], sample=sample)


def header_names(header: list[str], choices: list[str]) -> list[str]:
    """Header names that make the importer read each column as chosen."""
    if len(choices) != len(header):
        raise FileError(
            f"The file has {len(header)} columns but {len(choices)} were chosen: "
            "choose the file again."
        )
    names: list[str] = []
    for original, choice in zip(header, choices, strict=True):
        if choice not in CHOICES:
            raise FileError(f'"{choice}" is not a column choice.')
        if choice == "ignore":
            names.append("")  # an unnamed column is not read
        elif choice == "attribute":
            name = original.strip() or "column"
            # A name the importer would read as one of its own fields gets a suffix.
            names.append(name if guess(name) == "attribute" else f"{name} (attribute)")
        else:
            names.append(choice)
    if "email" not in choices:
        raise FileError("Choose which column holds the email address.")
    return names


class _Prefixed:
    """A binary stream: `prefix` first, then the rest of `stream` (only `read` is needed)."""

    def __init__(self, prefix: bytes, stream: BinaryIO) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size < 0:
                data, self._prefix = self._prefix + self._stream.read(), b""
                return data
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return self._stream.read(size)


def _header_end(head: bytes) -> int:
    """Offset just past the header line's end (a newline outside quotes)."""
    quoted = False
    for offset, byte in enumerate(head):
        if byte == 0x22:  # "
            quoted = not quoted
        elif byte == 0x0A and not quoted:  # \n
            return offset + 1
    if len(head) < BLOCK:
        return len(head)  # a file of just a header
    raise FileError("The header line is longer than 1 MB.")


def with_header(stream: BinaryIO, choices: list[str]) -> BinaryIO:
    """The upload with its header line rewritten to the chosen columns."""
    head = stream.read(BLOCK)
    end = _header_end(head)
    header = read_header(head[:end])
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(header_names(header, choices))
    return _Prefixed(out.getvalue().encode() + head[end:], stream)  # type: ignore[return-value]
