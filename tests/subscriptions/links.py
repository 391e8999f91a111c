"""Following the links of the self-service pages in the test client."""

from __future__ import annotations

ONE_CLICK = "List-Unsubscribe=One-Click"


def path_of(url: str) -> str:
    """The path of an absolute link of the test app (public URL http://localhost)."""
    assert url.startswith("http://localhost/"), url
    return url[len("http://localhost"):]
