"""The import's fast address path gives exactly `normalise_email`'s answer."""

from __future__ import annotations

import pytest

from service.imports.addresses import fast_normalise_email
from service.subscribers import InvalidEmail, normalise_email

CORPUS = [
    "ana@example.org", "Ana@Example.ORG", "  ana@example.org\t", "a.b+tag@sub.example.co.uk",
    "o'brien@example.ie", "x@a.io", "!#$%&'*+-/=?^_`{|}~@example.org", "user@xn--bcher-kva.de",
    "user@bücher.de", "user@BÜCHER.de", "josé@example.es", "用户@例子.广告", "Postmaster@example.org",
    "ABUSE@Example.org", "info@example.org", "a@localhost", "a@example.local", "a@example.test",
    "a@invalid", "a@example", "a@123.456", "a@[127.0.0.1]", '"quoted"@example.org',
    "Ana <ana@example.org>", "a..b@example.org", ".a@example.org", "a.@example.org",
    "a@-example.org", "a@example-.org", "a@exa_mple.org", "a@@example.org", "a@b@example.org",
    "@example.org", "ana@", "ana", "", "   ", "a b@example.org", "a@example.org.",
    "a@example..org", "ana@example.org\u200b", "ana\u0000@example.org", "ana@exam\nple.org",
    "x" * 64 + "@example.org", "x" * 65 + "@example.org",
    "a@" + ".".join(["b" * 63] * 3) + ".org", "a@" + ("b" * 63 + ".") * 4 + "org",
    "y" * 240 + "@example.org", "y" * 200 + "@" + "bücher" * 8 + ".de",
    "ü" * 10 + "@example.org", "a@" + "ü" * 60 + ".de", "a@xn--.org", "a@xn--zz.org",
    "a@EXAMPLE.org", "A@ex-ample.org", "1@2.example", "a@example.c", "a@example.c0m",
    "a@example.123", "a@ex\u00adample.org", "ａ@example.org", "a@ｅxample.org",
    "a@example.org\r", "\ufeffa@example.org",
]


def outcome(fn, raw):
    try:
        return ("ok", fn(raw))
    except InvalidEmail as exc:
        return ("invalid", str(exc))


@pytest.mark.parametrize("raw", CORPUS)
def test_same_as_normalise_email(raw):
    assert outcome(fast_normalise_email, raw) == outcome(normalise_email, raw)


def test_many_generated_addresses_agree():
    locals_ = ["a", "A.b", "x+y", "a-b_c", "Z9", "a.b.c", "o'k", "Q"]
    domains = ["example.org", "Example.ORG", "mail.example.co", "bücher.de", "xn--bcher-kva.de",
               "localhost", "ex.test", "a.b", "example.c0m", "sub-domain.example.net"]
    for local in locals_:
        for domain in domains:
            raw = f"{local}@{domain}"
            assert outcome(fast_normalise_email, raw) == outcome(normalise_email, raw), raw
