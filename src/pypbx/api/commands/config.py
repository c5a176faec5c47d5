"""Extension configuration commands (spec 8.19-8.22): AddConfig, GetConfig, ModifyConfig,
RemoveConfig.

Codes follow the evaluation order of spec 4.2: unknown type 701, then XML syntax 300, then
unknown id 701, then content 702 / duplicate 703.
"""

from __future__ import annotations

import dataclasses
import logging

from pypbx.api.config_xml import (
    KNOWN_TYPES,
    ConfigContentError,
    ConfigSyntaxError,
    SipConfig,
    canonical_type,
    check_extension_id,
    check_fields,
    parse_config,
    render_sip_config,
)
from pypbx.api.context import CommandContext
from pypbx.api.registry import Command, Param
from pypbx.api.sip_secrets import ha1_values
from pypbx.api.status import ApiError, Status
from pypbx.api.xmlout import Node
from pypbx.store.records import AlreadyExistsError, ExtensionRecord, NotFoundError

logger = logging.getLogger(__name__)

MAX_EXTENSION_ID_LENGTH = 128


def extension_id(value: str) -> str:
    """Ids are looked up, not created, here: any short text, so unknown ones give 701."""
    stripped = value.strip()
    if len(stripped) > MAX_EXTENSION_ID_LENGTH:
        raise ValueError("extension id too long")
    return stripped


CONFIG_PARAMS = (
    Param("ExtensionType", mandatory=True),
    Param("ConfigXML", mandatory=True),
)
EXTENSION_ID = Param("ExtensionId", mandatory=True, validator=extension_id)


def _extension_type(ctx: CommandContext) -> str:
    sent = ctx.require("ExtensionType", str)
    known = canonical_type(sent)
    if known is None:
        raise ApiError(Status.CONFIG_NOT_FOUND, sent.strip())
    return known


def _parse(ctx: CommandContext, extension_type: str) -> dict[str, str]:
    try:
        return parse_config(ctx.require("ConfigXML", str), extension_type)
    except ConfigSyntaxError as exc:
        raise ApiError(Status.PARSE_ERROR, str(exc)) from exc
    except ConfigContentError as exc:
        raise _invalid(extension_type, exc) from exc


def _invalid(extension_type: str, exc: Exception) -> ApiError:
    logger.info("invalid %s configuration: %s", extension_type, exc)
    return ApiError(Status.INVALID_CONFIG, extension_type)


def _check(extension_type: str, fields: dict[str, str], *, require_all: bool) -> SipConfig:
    try:
        return check_fields(fields, require_all=require_all)
    except ConfigContentError as exc:
        raise _invalid(extension_type, exc) from exc


async def add_config(ctx: CommandContext) -> list[Node]:
    extension_type = _extension_type(ctx)
    config = _check(extension_type, _parse(ctx, extension_type), require_all=True)
    # require_all guarantees every field; the `or` defaults only satisfy the type checker.
    ext_id, auth_name = config.extension_id or "", config.authorization_name or ""
    password = config.password or ""
    if await ctx.store.get_extension(ext_id) is not None:
        raise ApiError(Status.CONFIG_ALREADY_EXISTS)
    md5, sha256 = ha1_values(auth_name, ctx.settings.realm, password)
    record = ExtensionRecord(
        id=ext_id,
        type=extension_type,
        enabled=bool(config.enabled),
        user_id=config.user_id or "",
        username=config.username or "",
        authorization_name=auth_name,
        password=password if ctx.settings.keep_sip_passwords else None,
        ha1_md5=md5,
        ha1_sha256=sha256,
    )
    try:
        await ctx.store.add_extension(record)
    except AlreadyExistsError as exc:  # created concurrently since the check above
        raise ApiError(Status.CONFIG_ALREADY_EXISTS) from exc
    logger.info("extension %s added", record.id)
    return []


def _apply(ctx: CommandContext, record: ExtensionRecord, config: SipConfig) -> ExtensionRecord:
    """Partial update: absent elements keep their stored values (spec 8.21)."""
    auth_name = config.authorization_name or record.authorization_name
    password = config.password if config.password is not None else record.password
    md5: str | None
    sha256: str | None
    if password is not None:
        md5, sha256 = ha1_values(auth_name, ctx.settings.realm, password)
    elif auth_name == record.authorization_name:
        md5, sha256 = record.ha1_md5, record.ha1_sha256
    else:
        # HA1 covers the authorization name; without the password it cannot be recomputed.
        raise _invalid(record.type, ValueError("AuthorizationName changed without Password"))
    return dataclasses.replace(
        record,
        authorization_name=auth_name,
        password=password if ctx.settings.keep_sip_passwords else None,
        ha1_md5=md5,
        ha1_sha256=sha256,
        username=config.username or record.username,
        enabled=record.enabled if config.enabled is None else config.enabled,
        user_id=config.user_id or record.user_id,
    )


async def modify_config(ctx: CommandContext) -> list[Node]:
    extension_type = _extension_type(ctx)
    fields = _parse(ctx, extension_type)
    try:
        ext_id = check_extension_id(fields.get("ID"))
    except ConfigContentError as exc:
        raise _invalid(extension_type, exc) from exc
    record = await ctx.store.get_extension(ext_id)
    if record is None:
        raise ApiError(Status.CONFIG_NOT_FOUND, ext_id)
    if record.type != extension_type:
        raise _invalid(extension_type, ValueError(f"stored type is {record.type}"))
    updated = _apply(ctx, record, _check(extension_type, fields, require_all=False))
    try:
        await ctx.store.update_extension(updated)
    except NotFoundError as exc:  # removed concurrently
        raise ApiError(Status.CONFIG_NOT_FOUND, ext_id) from exc
    logger.info("extension %s modified", ext_id)
    await ctx.pbx.extension_changed(ext_id)
    return []


async def get_config(ctx: CommandContext) -> list[Node]:
    ext_id = ctx.require("ExtensionId", str)
    record = await ctx.store.get_extension(ext_id)
    if record is None:
        raise ApiError(Status.CONFIG_NOT_FOUND, ext_id)
    return [
        render_sip_config(
            known_type=KNOWN_TYPES.get(record.type, f"{record.type}ExtensionInfo"),
            authorization_name=record.authorization_name,
            password=record.password,
            username=record.username,
            last_ip=record.last_ip,
            user_agent=record.user_agent,
            enabled=record.enabled,
            extension_id=record.id,
            user_id=record.user_id,
        )
    ]


async def remove_config(ctx: CommandContext) -> list[Node]:
    ext_id = ctx.require("ExtensionId", str)
    if not await ctx.store.remove_extension(ext_id):
        raise ApiError(Status.CONFIG_NOT_FOUND, ext_id)
    logger.info("extension %s removed", ext_id)
    await ctx.pbx.extension_changed(ext_id)
    return []


COMMANDS = (
    Command("AddConfig", add_config, CONFIG_PARAMS),
    # GetConfig returns SIP passwords in clear text, hence admin only (spec 8.20).
    Command("GetConfig", get_config, (EXTENSION_ID,), admin_only=True),
    Command("ModifyConfig", modify_config, CONFIG_PARAMS),
    Command("RemoveConfig", remove_config, (EXTENSION_ID,)),
)
