"""Conversion between records and table rows, kept apart from the queries.

All datetimes pass through `to_db_time`, the single point where a naive datetime is
refused; the column type (`schema.UTCDateTime`) gives them back aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping

from pypbx.store.records import (
    BindingRecord,
    CallHistoryRecord,
    ExtensionRecord,
    MessageRecord,
    OfficeUserRecord,
)


def to_db_time(value: datetime, name: str) -> datetime:
    """`value` in UTC; ValueError if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def optional_db_time(value: datetime | None, name: str) -> datetime | None:
    return None if value is None else to_db_time(value, name)


def extension_config_values(ext: ExtensionRecord) -> dict[str, Any]:
    """The columns an administrator edits (not the runtime or creation columns)."""
    return {
        "type": ext.type,
        "enabled": ext.enabled,
        "user_id": ext.user_id,
        "username": ext.username,
        "authorization_name": ext.authorization_name,
        "password": ext.password,
        "ha1_md5": ext.ha1_md5,
        "ha1_sha256": ext.ha1_sha256,
        "settings": dict(ext.settings),
    }


def extension_values(ext: ExtensionRecord) -> dict[str, Any]:
    return {
        "id": ext.id,
        **extension_config_values(ext),
        "last_ip": ext.last_ip,
        "user_agent": ext.user_agent,
        "created_at": to_db_time(ext.created_at, "created_at"),
        "updated_at": to_db_time(ext.updated_at, "updated_at"),
    }


def extension_from_row(row: RowMapping) -> ExtensionRecord:
    return ExtensionRecord(
        id=row["id"],
        type=row["type"],
        enabled=bool(row["enabled"]),
        user_id=row["user_id"],
        username=row["username"],
        authorization_name=row["authorization_name"],
        password=row["password"],
        ha1_md5=row["ha1_md5"],
        ha1_sha256=row["ha1_sha256"],
        settings=dict(row["settings"] or {}),
        last_ip=row["last_ip"],
        user_agent=row["user_agent"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def user_values(user: OfficeUserRecord) -> dict[str, Any]:
    return {
        "username": user.username,
        "password_hash": user.password_hash,
        "may_use_api": user.may_use_api,
        "is_admin": user.is_admin,
        "created_at": to_db_time(user.created_at, "created_at"),
    }


def user_from_row(row: RowMapping) -> OfficeUserRecord:
    return OfficeUserRecord(
        username=row["username"],
        password_hash=row["password_hash"],
        may_use_api=bool(row["may_use_api"]),
        is_admin=bool(row["is_admin"]),
        created_at=row["created_at"],
    )


def binding_values(binding: BindingRecord) -> dict[str, Any]:
    return {
        "extension_id": binding.extension_id,
        "contact": binding.contact,
        "source": binding.source,
        "transport": binding.transport,
        "expires_at": to_db_time(binding.expires_at, "expires_at"),
        "call_id": binding.call_id,
        "cseq": binding.cseq,
        "user_agent": binding.user_agent,
        "instance_id": binding.instance_id,
    }


def binding_from_row(row: RowMapping) -> BindingRecord:
    return BindingRecord(
        extension_id=row["extension_id"],
        contact=row["contact"],
        source=row["source"],
        transport=row["transport"],
        expires_at=row["expires_at"],
        call_id=row["call_id"],
        cseq=row["cseq"],
        user_agent=row["user_agent"],
        instance_id=row["instance_id"],
    )


def history_values(rec: CallHistoryRecord) -> dict[str, Any]:
    return {
        "call_id": rec.call_id,
        "start_time": to_db_time(rec.start_time, "start_time"),
        "answer_time": optional_db_time(rec.answer_time, "answer_time"),
        "end_time": optional_db_time(rec.end_time, "end_time"),
        "direction": rec.direction,
        "source": rec.source,
        "destination": rec.destination,
        "dialed": rec.dialed,
        "caller_id": rec.caller_id,
        "state": rec.state,
        "type": rec.type,
        "ring_duration": float(rec.ring_duration),
        "talk_duration": float(rec.talk_duration),
    }


def history_from_row(row: RowMapping) -> CallHistoryRecord:
    return CallHistoryRecord(
        call_id=row["call_id"],
        start_time=row["start_time"],
        answer_time=row["answer_time"],
        end_time=row["end_time"],
        direction=row["direction"],
        source=row["source"],
        destination=row["destination"],
        dialed=row["dialed"],
        caller_id=row["caller_id"],
        state=row["state"],
        type=row["type"],
        ring_duration=row["ring_duration"],
        talk_duration=row["talk_duration"],
    )


def message_values(rec: MessageRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "sender": rec.sender,
        "sender_name": rec.sender_name,
        "recipient": rec.recipient,
        "dialed": rec.dialed,
        "api_extension": rec.api_extension,
        "report_url": rec.report_url,
        "content_type": rec.content_type,
        "body": bytes(rec.body),
        "state": rec.state,
        "attempts": rec.attempts,
        "reason": rec.reason,
        "created_at": to_db_time(rec.created_at, "created_at"),
        "expires_at": to_db_time(rec.expires_at, "expires_at"),
        "finished_at": optional_db_time(rec.finished_at, "finished_at"),
        "remote_id": rec.remote_id,
    }


def message_from_row(row: RowMapping) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        sender=row["sender"],
        sender_name=row["sender_name"],
        recipient=row["recipient"],
        dialed=row["dialed"],
        api_extension=row["api_extension"],
        report_url=row["report_url"],
        content_type=row["content_type"],
        body=bytes(row["body"]),
        state=row["state"],
        attempts=row["attempts"],
        reason=row["reason"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        finished_at=row["finished_at"],
        remote_id=row["remote_id"],
    )
