"""The login page's `?next=`: only ever back into the admin, and never a broken header."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("target", [
    "/admin/subscribers\r\nSet-Cookie: stolen=1",
    "/admin\n/subscribers",
    "/admin/\x00",
    "/admin/\u202egro.live",
    "//evil.example/admin",
    "https://evil.example/admin",
])
def test_a_hostile_next_goes_to_the_dashboard(staff, target):
    signed_in = staff("viewer")
    answer = signed_in.get("/admin/login", query_string={"next": target})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/admin/"


def test_a_plain_next_is_kept(staff):
    answer = staff("viewer").get("/admin/login", query_string={"next": "/admin/subscribers?q=a"})
    assert answer.headers["Location"] == "/admin/subscribers?q=a"
