"""Admin fixtures: staff users of each role and a signed-in test client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from service.models import Role
from tests import factories

from .signin import SeparateUserClient, Staff, log_in


@pytest.fixture(autouse=True)
def _separate_users(app: Flask) -> None:
    app.test_client_class = SeparateUserClient


@pytest.fixture
def staff(app: Flask) -> Callable[[str], Staff]:
    """staff("editor") → a client signed in as a new user with that role."""

    def make(role: str = "admin") -> Staff:
        email = f"{role}-{len(app.extensions.setdefault('test_staff', []))}@example.org"
        app.extensions["test_staff"].append(email)
        factories.user(email, Role(role))
        client = app.test_client()
        token = log_in(client, email)
        return Staff(client=client, email=email, token=token)

    return make
