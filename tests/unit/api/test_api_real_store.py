"""The configuration commands and authentication against the real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import FakePbx, block, code_message, envelope

from pypbx.api.server import create_app
from pypbx.api.settings import ApiSettings
from pypbx.sip.digest import compute_ha1
from pypbx.store import Store
from pypbx.store.records import ExtensionRecord, OfficeUserRecord

ADMIN = {"Username": "admin", "Password": "abc123"}


@pytest.fixture
async def real_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'pypbx.db'}")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def client(
    real_store: Store, password_hashes: dict[str, str]
) -> AsyncIterator[TestClient[Any, Any]]:
    await real_store.add_user(OfficeUserRecord("admin", password_hashes["abc123"], is_admin=True))
    await real_store.add_user(OfficeUserRecord("HTTP_User_1", password_hashes["qwe123"]))
    app = create_app(ApiSettings(realm="pbx.example"), real_store, FakePbx())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def config(ext_id: str, **overrides: str) -> str:
    fields = {
        "AuthorizationName": ext_id,
        "Password": "s3cret",
        "Username": ext_id,
        "Enabled": "true",
        "ID": ext_id,
        "UserID": f"user{ext_id}",
        **overrides,
    }
    children = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items())
    return f'<Config knownType="SIPExtensionInfo">{children}</Config>'


async def call(client: TestClient[Any, Any], path: str = "/", **data: str) -> str:
    return await (await client.post(path, data={**ADMIN, **data})).text()


async def test_config_life_cycle(client: TestClient[Any, Any], real_store: Store) -> None:
    ok = envelope(200, "Command successfully executed")
    assert (
        await call(client, command="AddConfig", ExtensionType="SIP", ConfigXML=config("200")) == ok
    )
    assert await call(
        client, command="AddConfig", ExtensionType="SIP", ConfigXML=config("200")
    ) == (envelope(703, "Extension configuration already exists"))
    stored = await real_store.get_extension("200")
    assert stored is not None
    assert stored.ha1_md5 == compute_ha1("200", "pbx.example", "s3cret", "MD5")
    assert stored.ha1_sha256 == compute_ha1("200", "pbx.example", "s3cret", "SHA-256")
    await real_store.set_extension_runtime(
        "200", last_ip="192.0.2.7:5060 (Udp)", user_agent="baresip"
    )

    xml = config("200", Enabled="false", UserID="user1000")
    assert await call(client, command="ModifyConfig", ExtensionType="SIP", ConfigXML=xml) == ok
    assert await call(client, command="GetConfig", ExtensionId="200") == envelope(
        200,
        "Command successfully executed",
        *block(
            """
  <Config knownType="SIPExtensionInfo">
    <AuthorizationName>200</AuthorizationName>
    <Password>s3cret</Password>
    <Username>200</Username>
    <LastIPAddress>192.0.2.7:5060 (Udp)</LastIPAddress>
    <UserAgentName>baresip</UserAgentName>
    <Enabled>false</Enabled>
    <ID>200</ID>
    <UserID>user1000</UserID>
  </Config>
"""
        ),
    )

    await real_store.add_extension(ExtensionRecord("9994", "API"))
    text = await call(client, "/api", command="ListExtensions")
    assert "<Id>200@localhost</Id>" in text and "<Type>API extension</Type>" in text
    assert text.index("200@localhost") < text.index("9994@localhost")
    xml = config("9994")
    assert await call(client, command="ModifyConfig", ExtensionType="SIP", ConfigXML=xml) == (
        envelope(702, "Invalid configuration for type 'SIP'")
    )

    assert await call(client, command="RemoveConfig", ExtensionId="200") == ok
    assert await call(client, command="RemoveConfig", ExtensionId="200") == envelope(
        701, "Configuration for type '200' not found"
    )
    assert await call(client, command="GetConfig", ExtensionId="200") == envelope(
        701, "Configuration for type '200' not found"
    )
    xml = config("200")
    assert await call(client, command="ModifyConfig", ExtensionType="SIP", ConfigXML=xml) == (
        envelope(701, "Configuration for type '200' not found")
    )


async def test_users_from_the_store(client: TestClient[Any, Any], real_store: Store) -> None:
    query = "/?command=ListExtensions&Username=HTTP_User_1&Password="
    assert code_message(await (await client.get(query + "qwe123")).text())[0] == 200
    assert code_message(await (await client.get(query + "nope")).text())[0] == 305
    text = await (
        await client.get("/?command=GetConfig&ExtensionId=1&Username=HTTP_User_1&Password=qwe123")
    ).text()
    assert code_message(text) == (306, "User is not allowed to use API in ACL")
    user = await real_store.get_user("HTTP_User_1")
    assert user is not None
    user.may_use_api = False
    await real_store.update_user(user)
    assert code_message(await (await client.get(query + "qwe123")).text())[0] == 306
