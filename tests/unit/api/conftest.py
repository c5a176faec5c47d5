"""Fixtures for the HTTP API tests (fakes live in api_support)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import OPEN, ClientFactory, FakePbx, FakeStore

from pypbx.api.server import create_app
from pypbx.api.settings import ApiSettings
from pypbx.store.passwords import hash_password


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def pbx() -> FakePbx:
    return FakePbx()


@pytest.fixture
async def make_client(store: FakeStore, pbx: FakePbx) -> AsyncIterator[ClientFactory]:
    """`await make_client(settings)` -> a started client; all are closed at teardown."""
    clients: list[TestClient[Any, Any]] = []

    async def factory(settings: ApiSettings = OPEN, **server_kwargs: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(
            TestServer(create_app(settings, store, pbx), **server_kwargs)
        )
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    """A client for an app with authentication off (most command tests)."""
    return await make_client()


@pytest.fixture(scope="session")
def password_hashes() -> dict[str, str]:
    """scrypt is slow on purpose: hash the test passwords once per session."""
    return {pw: hash_password(pw) for pw in ("qwe123", "abc123", "mypassword12")}
