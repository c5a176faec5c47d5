"""GET /recordings/<path>: the files Record made, behind the API's address control and
authentication, and never anything outside the recordings directory."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from api_support import ClientFactory, FakeStore, envelope, raw_request

from pypbx.api.settings import ApiSettings
from pypbx.store.records import OfficeUserRecord

Client = TestClient[Any, Any]
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40))
MP3 = b"ID3\x04\x00" + bytes(200)


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    root = tmp_path / "recordings"
    (root / "team" / "sales").mkdir(parents=True)
    (root / "H2Wwb_20240101-120000.wav").write_bytes(WAV)
    (root / "team" / "sales" / "XzeOK_20240101-120001.mp3").write_bytes(MP3)
    (root / "a b&c+ü.wav").write_bytes(b"odd name")
    (tmp_path / "secret.txt").write_bytes(b"not a recording")
    return root


@pytest.fixture
async def files(make_client: ClientFactory, recordings: Path) -> Client:
    return await make_client(ApiSettings(auth_required=False, recordings_dir=recordings))


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def users(store: FakeStore, password_hashes: dict[str, str]) -> FakeStore:
    store.users["HTTP_User_1"] = OfficeUserRecord("HTTP_User_1", password_hashes["qwe123"])
    store.users["user1000"] = OfficeUserRecord(
        "user1000", password_hashes["mypassword12"], may_use_api=False
    )
    return store


# --------------------------------------------------------------------------- serving


async def test_serves_a_recording(files: Client) -> None:
    resp = await files.get("/recordings/H2Wwb_20240101-120000.wav")
    assert resp.status == 200
    assert await resp.read() == WAV
    assert resp.content_type in ("audio/x-wav", "audio/wav", "audio/vnd.wave")


async def test_serves_from_subdirectories(files: Client) -> None:
    resp = await files.get("/recordings/team/sales/XzeOK_20240101-120001.mp3")
    assert resp.status == 200
    assert await resp.read() == MP3
    assert resp.content_type == "audio/mpeg"


async def test_percent_encoded_names(files: Client) -> None:
    status, body = await raw_request(files, "/recordings/a%20b%26c%2B%C3%BC.wav")
    assert (status, body) == (200, "odd name")


async def test_head_gives_the_length_without_the_body(files: Client) -> None:
    resp = await files.head("/recordings/H2Wwb_20240101-120000.wav")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(WAV))
    assert await resp.read() == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_other_methods_405(files: Client, method: str) -> None:
    resp = await files.request(method, "/recordings/H2Wwb_20240101-120000.wav")
    assert resp.status == 405
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


async def test_the_api_still_answers_beside_it(files: Client) -> None:
    resp = await files.get("/?command=ListActiveCalls")
    assert await resp.text() == envelope(200, "Command successfully executed", "  <ActiveCalls />")


async def test_not_served_without_a_recordings_dir(
    make_client: ClientFactory, recordings: Path
) -> None:
    client = await make_client(ApiSettings(auth_required=False))
    resp = await client.get("/recordings/H2Wwb_20240101-120000.wav")
    assert resp.status == 404


async def test_recordings_dir_given_through_a_symlink(
    make_client: ClientFactory, recordings: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(recordings, target_is_directory=True)
    client = await make_client(ApiSettings(auth_required=False, recordings_dir=link))
    resp = await client.get("/recordings/team/sales/XzeOK_20240101-120001.mp3")
    assert resp.status == 200
    assert await resp.read() == MP3


async def test_a_file_made_after_startup_is_served(files: Client, recordings: Path) -> None:
    (recordings / "new.wav").write_bytes(b"fresh")
    resp = await files.get("/recordings/new.wav")
    assert resp.status == 200
    assert await resp.read() == b"fresh"


# --------------------------------------------------------------------------- not found


@pytest.mark.parametrize(
    "target",
    [
        "/recordings/missing.wav",
        "/recordings/team",  # a directory
        "/recordings/team/",
        "/recordings/team/sales",
        "/recordings/",
        "/recordings",
        "/recordings/H2Wwb_20240101-120000.wav%00.txt",
        "/recordings/..%2Fsecret.txt",
        "/recordings/%2E%2E%2Fsecret.txt",
        "/recordings/team/..%2F..%2Fsecret.txt",
        "/recordings/../secret.txt",
        "/recordings/%2Fetc%2Fpasswd",
        "/recordings//etc/passwd",
        "/Recordings/H2Wwb_20240101-120000.wav",
    ],
)
async def test_not_found_and_no_escape(files: Client, target: str) -> None:
    status, body = await raw_request(files, target)
    assert status == 404
    assert "not a recording" not in body
    assert "root:" not in body


async def test_symlink_leading_out_is_not_followed(
    files: Client, recordings: Path, tmp_path: Path
) -> None:
    (recordings / "escape.wav").symlink_to(tmp_path / "secret.txt")
    (recordings / "up").symlink_to(tmp_path, target_is_directory=True)
    for target in ("/recordings/escape.wav", "/recordings/up/secret.txt"):
        status, body = await raw_request(files, target)
        assert status == 404
        assert "not a recording" not in body


async def test_symlink_within_the_directory_is_served(files: Client, recordings: Path) -> None:
    (recordings / "latest.mp3").symlink_to(
        recordings / "team" / "sales" / "XzeOK_20240101-120001.mp3"
    )
    resp = await files.get("/recordings/latest.mp3")
    assert resp.status == 200
    assert await resp.read() == MP3


# --------------------------------------------------------------------------- access


@pytest.mark.parametrize(
    "settings",
    [
        {"allowed_networks": ["10.0.0.0/8"]},
        {"denied_addresses": ["127.0.0.1"]},
    ],
)
async def test_forbidden_address_403(
    make_client: ClientFactory, recordings: Path, settings: dict[str, Any]
) -> None:
    client = await make_client(ApiSettings(recordings_dir=recordings, **settings))
    resp = await client.get("/recordings/H2Wwb_20240101-120000.wav")  # before any credentials
    assert resp.status == 403
    assert await resp.read() != WAV


async def test_allowed_address_with_auth_off(make_client: ClientFactory, recordings: Path) -> None:
    settings = ApiSettings(
        auth_required=False, recordings_dir=recordings, allowed_networks=["127.0.0.0/8"]
    )
    client = await make_client(settings)
    resp = await client.get("/recordings/H2Wwb_20240101-120000.wav")
    assert resp.status == 200


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", {}),
        ("?Username=HTTP_User_1", {}),
        ("?Username=HTTP_User_1&Password=wrong", {}),
        ("?Username=nobody&Password=qwe123", {}),
        ("?Username=user1000&Password=mypassword12", {}),  # not allowed to use the API
        ("", basic("HTTP_User_1", "wrong")),
        ("", basic("user1000", "mypassword12")),
        ("", {"Authorization": "Basic !!!"}),
        ("", {"Authorization": "Bearer abc"}),
    ],
)
async def test_without_valid_credentials_401(
    make_client: ClientFactory,
    recordings: Path,
    users: FakeStore,
    query: str,
    headers: dict[str, str],
) -> None:
    client = await make_client(ApiSettings(recordings_dir=recordings))
    resp = await client.get(f"/recordings/H2Wwb_20240101-120000.wav{query}", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="pypbx"'
    assert await resp.read() != WAV


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?Username=HTTP_User_1&Password=qwe123", {}),
        ("?username=HTTP_User_1&password=qwe123", {}),  # names are case-insensitive
        ("", basic("HTTP_User_1", "qwe123")),
    ],
)
async def test_with_valid_credentials_200(
    make_client: ClientFactory,
    recordings: Path,
    users: FakeStore,
    query: str,
    headers: dict[str, str],
) -> None:
    client = await make_client(ApiSettings(recordings_dir=recordings))
    resp = await client.get(f"/recordings/H2Wwb_20240101-120000.wav{query}", headers=headers)
    assert resp.status == 200
    assert await resp.read() == WAV


async def test_credentials_are_checked_before_the_path(
    make_client: ClientFactory, recordings: Path, users: FakeStore
) -> None:
    """An unauthenticated client learns nothing about which files exist."""
    client = await make_client(ApiSettings(recordings_dir=recordings))
    for name in ("H2Wwb_20240101-120000.wav", "missing.wav", "..%2Fsecret.txt"):
        status, _ = await raw_request(client, f"/recordings/{name}")
        assert status == 401
