"""Reading an import file: encoding check, flexible column names, one parsed row at a time.

Nothing here touches the database. `scan()` reads the whole file once, in 1 MB blocks,
before anything is imported: it refuses files that are not UTF-8 (with or without a BOM)
with a message saying what to do, and counts the lines for the progress bar. `rows()`
then yields, for every data line, either a `Row` (valid, normalised) or a `Problem` (the
line number and why it cannot be imported); an invalid row never stops the import.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, BinaryIO

from ..fields import (
    ATTRIBUTE_KEY_MAX,
    ATTRIBUTE_MAX,
    ATTRIBUTES_MAX,
    NAME_MAX,
    POSTAL_MAX,
    FieldError,
    Refusal,
    clean_text,
    split_tags,
)
from ..i18n import LOCALES
from ..postal import NOWHERE, normalise_postal_code, place_for
from ..subscribers import InvalidEmail, email_key
from .addresses import fast_normalise_email

if TYPE_CHECKING:
    from _csv import Reader

BLOCK = 1 << 20
# Field size the csv module accepts: well above any sane cell, far below "the rest of the
# file swallowed by an unclosed quote".
FIELD_LIMIT = 64 * 1024

# Header aliases, compared after `header_key()` (lower case, accents and punctuation gone).
ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "e_mail", "email_address", "e_mail_address", "emailaddress", "mail",
              "correo", "correo_electronico", "email_addr"),
    "first_name": ("first_name", "firstname", "first", "given_name", "givenname", "forename",
                   "nombre", "fname"),
    "last_name": ("last_name", "lastname", "last", "surname", "family_name", "familyname",
                  "apellido", "apellidos", "lname"),
    "name": ("name", "full_name", "fullname", "nombre_completo"),
    "postal_code": ("postal_code", "postalcode", "postcode", "post_code", "zip", "zip_code",
                    "zipcode", "codigo_postal"),
    "language": ("language", "lang", "locale", "idioma", "preferred_language"),
    "state": ("state", "us_state"),
    # Tags to add to the person, separated by "," or ";" (never removes one).
    "tags": ("tags", "tag", "etiquetas"),
    # Written by `actionlist export`: a row exported as unsubscribed is never re-imported.
    "status": ("status", "subscription_status"),
}
# Columns `actionlist export` writes that describe our own records, not the person:
# ignored on import instead of becoming attributes, so an export imports cleanly.
EXPORT_ONLY = frozenset({"subscribed_at", "confirmed_at", "unsubscribed_at"})
FIELD_OF = {alias: name for name, aliases in ALIASES.items() for alias in aliases}

LANGUAGES = {
    "en": "en", "eng": "en", "english": "en", "ingles": "en",
    "es": "es", "spa": "es", "spanish": "es", "espanol": "es", "castellano": "es",
}
_NON_WORD = re.compile(r"[^a-z0-9]+")
_STATE = re.compile(r"[A-Z]{2}")

# A spreadsheet opening a CSV runs a cell that starts with one of these as a formula
# (OWASP, "CSV Injection"): `=cmd|'/C calc'!A0`, `@SUM(…)`, `-2+3`…
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_QUOTED_FORMULA = re.compile(r"'+[=+\-@\t\r]")


class FileError(ValueError):
    """The file as a whole cannot be imported (encoding, header): nothing was imported."""


def quote_formula(value: str) -> str:
    """`value` as a cell no spreadsheet runs: a formula start gets a `'` in front.

    That is OWASP's rule, and spreadsheets show the cell as text without the quote. A
    value that already is quotes before a formula start (`'=x`) gets one more, so that
    `unquote_formula` always gives back exactly the value: an export imports back as it
    was. Every other value is left as it is.
    """
    if value.startswith(FORMULA_START) or (value[:1] == "'" and _QUOTED_FORMULA.match(value)):
        return "'" + value
    return value


def unquote_formula(cell: str) -> str:
    """The value `quote_formula` made `cell` from (the importer reads every cell this way).

    In a file written elsewhere, a cell typed as `'=x` (a spreadsheet's way to enter text
    starting with `=`) is read as `=x` too.
    """
    if cell[:1] == "'" and _QUOTED_FORMULA.match(cell):
        return cell[1:]
    return cell


def header_key(text: str) -> str:
    """`"Correo electrónico "` → `"correo_electronico"`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_WORD.sub("_", ascii_text.lower()).strip("_")


@dataclass(frozen=True)
class Scan:
    """What one pass over the bytes found: enough to say no early and to show progress."""

    size: int
    lines: int  # physical lines, header included
    header: list[str]

    @property
    def data_lines(self) -> int:
        return max(0, self.lines - 1)


class Scanner:
    """Feed the file's bytes in blocks; `finish()` checks and describes them.

    Used on a local file (CLI) and on an upload while it is being stored (API), so both
    refuse the same files with the same words, before a single row is imported.
    """

    def __init__(self) -> None:
        self.size = 0
        self.newlines = 0
        self.last = b""
        self.head = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")

    def feed(self, block: bytes) -> None:
        if not block:
            return
        if self.size == 0:
            _refuse_other_unicode(block)
        try:
            self.decoder.decode(block)
        except UnicodeDecodeError as exc:
            raise not_utf8(self.newlines + block.count(b"\n", 0, exc.start) + 1,
                           block[exc.start:exc.start + 1]) from None
        if len(self.head) < BLOCK:
            self.head += block[: BLOCK - len(self.head)]
        self.size += len(block)
        self.newlines += block.count(b"\n")
        self.last = block[-1:]

    def finish(self) -> Scan:
        try:
            self.decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise not_utf8(self.newlines + 1, b"") from None
        if self.size == 0:
            raise FileError("The file is empty.")
        lines = self.newlines + (0 if self.last == b"\n" else 1)
        header = read_header(bytes(self.head))
        ColumnMap(header)  # raises FileError when no column holds the address
        return Scan(size=self.size, lines=lines, header=header)


def scan(stream: BinaryIO) -> Scan:
    scanner = Scanner()
    while block := stream.read(BLOCK):
        scanner.feed(block)
    return scanner.finish()


def _refuse_other_unicode(start: bytes) -> None:
    if start.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileError("The file is UTF-32; save it as CSV UTF-8 and import it again.")
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in start[:4]:
        raise FileError(
            "The file is UTF-16 (Excel's \"Unicode Text\"); save it as CSV UTF-8 and import "
            "it again."
        )


def not_utf8(line: int, byte: bytes) -> FileError:
    shown = f" (byte 0x{byte.hex().upper()})" if byte else ""
    return FileError(
        f"The file is not UTF-8: line {line} has a character that is not valid UTF-8{shown}, "
        "probably because it was saved as Latin-1 or Windows-1252. Nothing was imported. "
        "Save it as \"CSV UTF-8\" (Excel, LibreOffice: character set Unicode UTF-8) and "
        "import it again."
    )


def _reader(stream: IO[str]) -> Reader:
    """A csv reader under our cell size limit (the csv module's limit is process-wide, so
    it is set before every file: the header must meet the same limit as the rows)."""
    csv.field_size_limit(FIELD_LIMIT)
    return csv.reader(stream)


def _first_line(reader: Reader) -> list[str] | None:
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise FileError(f"The header line cannot be read: {exc}.") from None


def read_header(head: bytes) -> list[str]:
    text = head.decode("utf-8-sig", errors="ignore")
    first = _first_line(_reader(io.StringIO(text, newline="")))
    if not first or not any(cell.strip() for cell in first):
        raise FileError("The first line must be a header naming the columns (e.g. email).")
    return first


@dataclass
class ColumnMap:
    """Which cell of a row holds which field; every other named column is an attribute."""

    header: list[str]
    fields: dict[str, int] = field(init=False)
    attributes: list[tuple[int, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.fields = {}
        self.attributes = []
        seen: dict[str, str] = {}
        for index, raw in enumerate(self.header):
            name = unquote_formula(raw).strip()
            key = header_key(name)
            if not key:
                continue  # an unnamed column carries nothing we could name
            if key in EXPORT_ONLY:
                continue
            target = FIELD_OF.get(key)
            slot = target or f"attribute:{key}"
            if slot in seen:
                raise FileError(
                    f"Two columns mean the same thing: \"{seen[slot]}\" and \"{name}\"."
                )
            seen[slot] = name
            if target is not None:
                self.fields[target] = index
            else:
                self.attributes.append((index, _attribute_name(name, index)))
        if "email" not in self.fields:
            found = ", ".join(f'"{h.strip()}"' for h in self.header[:20])
            raise FileError(
                f"No column holds the email address (looked for a header such as \"email\" "
                f"or \"E-mail address\"; found {found})."
            )
        if len(self.attributes) > ATTRIBUTES_MAX:
            raise FileError(f"At most {ATTRIBUTES_MAX} extra columns can be kept as attributes.")


@dataclass(slots=True)
class Row:
    """A valid row: the normalised address and the cleaned details ("" when not given)."""

    line: int
    email: str
    key: str
    first_name: str
    last_name: str
    postal_code: str
    state: str
    locale: str
    attributes: dict[str, str]
    county: str = ""
    timezone: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Problem:
    """A row not imported, for the report: its line, the address as given, and why."""

    line: int
    email: str
    reason: str
    refused: bool = False  # valid but not allowed in (suppressed, erased, unsubscribed)


class _Bad(ValueError):
    pass


def _attribute_name(header: str, index: int) -> str:
    """A column kept as an attribute: its header is the key, under the rules of keys set
    by staff (no control or direction characters, at most ATTRIBUTE_KEY_MAX). A refused
    header is named by its position: its text is what cannot be shown."""
    try:
        return clean_text(header[:ATTRIBUTE_KEY_MAX], f"column {index + 1}'s header",
                          ATTRIBUTE_KEY_MAX)
    except FieldError as exc:
        raise FileError(f"The {_reason(exc)}: it cannot name an attribute.") from None


def _reason(error: FieldError) -> str:
    """The import report's words for a refused cell (`error.field` names the column)."""
    if error.refusal is Refusal.control:
        return f"{error.field} contains a line break or a control character"
    if error.refusal is Refusal.bidi:
        return f"{error.field} contains a character that changes the direction of text"
    if error.refusal is Refusal.too_long:
        return f"{error.field} is longer than {error.limit} characters"
    return f"{error.field}: {error.message}"


def _language(value: str) -> str:
    if not value:
        return ""
    found = LANGUAGES.get(value.strip().lower())
    if found is not None:
        return found
    if not value.strip():
        return ""
    code = header_key(value).replace("_", "-")
    found = LANGUAGES.get(code) or LANGUAGES.get(code.split("-")[0])
    if found is None:
        raise _Bad(f"language {value.strip()[:20]!r} is not one of {', '.join(LOCALES)}")
    return found


def rows(stream: IO[str], columns: ColumnMap | None = None) -> Iterator[Row | Problem]:
    """Parse a text stream (opened with newline="") into rows and problems.

    Line numbers are physical lines of the file (the header is line 1), the first line
    of a record when a quoted cell spans several.
    """
    reader = _reader(stream)
    header = _first_line(reader)
    if header is None:
        return
    columns = columns or ColumnMap(header)
    yield from _parse(reader, columns)


def _parse(reader: Reader, columns: ColumnMap) -> Iterator[Row | Problem]:
    f = columns.fields
    width = len(columns.header)
    email_at = f["email"]
    # Absent fields read cell `width`, an empty cell every row is padded with.
    get = {name: f.get(name, width) for name in ALIASES}
    attributes = columns.attributes
    iterator = iter(reader)
    start = reader.line_num + 1
    while True:
        try:
            cells = next(iterator)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Problem(start, "", f"the line cannot be read as CSV: {exc}")
            start = reader.line_num + 1
            continue
        line = start
        start = reader.line_num + 1
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue  # blank line
        if len(cells) > width:
            if any(c.strip() for c in cells[width:]):
                yield Problem(line, _cell(cells, email_at)[:254],
                              f"{len(cells)} cells, but the header names {width} columns")
                continue
            del cells[width:]
        cells.extend([""] * (width + 1 - len(cells)))
        if "'" in "".join(cells):  # one C-level test per row; quoted cells are rare
            cells[:] = [unquote_formula(cell) for cell in cells]
        raw_email = cells[email_at]
        try:
            email = fast_normalise_email(raw_email)
        except InvalidEmail as exc:
            reason = f"invalid email address: {exc}" if raw_email.strip() else "no email address"
            yield Problem(line, raw_email.strip()[:254], reason)
            continue
        try:
            yield _row(line, email, cells, get, attributes)
        except _Bad as exc:
            yield Problem(line, email, str(exc))


def _cell(cells: list[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index]


def _row(line: int, email: str, cells: list[str], get: dict[str, int],
         attributes: list[tuple[int, str]]) -> Row | Problem:
    """`cells` is padded: one cell per column plus an empty one for absent fields."""
    status = cells[get["status"]].strip().lower()
    if status == "unsubscribed":
        return Problem(line, email, "marked unsubscribed in the file", refused=True)
    try:
        first = clean_text(cells[get["first_name"]], "first name", NAME_MAX)
        last = clean_text(cells[get["last_name"]], "last name", NAME_MAX)
        if not first and not last and cells[get["name"]]:
            full = clean_text(cells[get["name"]], "name", 2 * NAME_MAX)
            first, _, last = full.partition(" ")
            if len(first) > NAME_MAX or len(last) > NAME_MAX:
                raise _Bad(f"name parts are longer than {NAME_MAX} characters")
        postal = normalise_postal_code(
            clean_text(cells[get["postal_code"]], "postal code", POSTAL_MAX))
        tags = split_tags(cells[get["tags"]]) if cells[get["tags"]] else []
        extra: dict[str, str] = {}
        for index, name in attributes:  # the same rules as attributes set by staff
            value = clean_text(cells[index], name, ATTRIBUTE_MAX)
            if value:
                extra[name] = value
    except FieldError as exc:
        raise _Bad(_reason(exc)) from None
    place = place_for(postal) if postal else NOWHERE
    state = place.state
    if not state:
        given = cells[get["state"]].strip().upper()
        state = given if _STATE.fullmatch(given) else ""
    locale = _language(cells[get["language"]])
    return Row(line, email, email_key(email), first, last, postal, state, locale, extra,
               place.county, place.timezone, tags)
