"""Extension configuration commands (spec 8.19-8.22): AddConfig, GetConfig, ModifyConfig,
RemoveConfig.

Codes follow the evaluation order of spec 4.2: unknown type 701, then XML syntax 300, then
unknown id 701, then content 702 / duplicate 703.

An `API` extension (see `pypbx.api.config_xml` for its document) is stored as a record of
type `API` with its spec 7 settings in the record's free `settings` column and no SIP
credentials at all: empty username and authorization name and no password or HA1, so no
phone can ever authenticate (and thus register or call) as it. Its ID shares the one
extension number space with every other type, hence 703 across types.

`RingGroup`, `Line` (an outside line) and `DialPlanRule` are stored the same way: their
settings in `settings` (see `pypbx.api.config_xml.SCHEMAS`), empty SIP name columns so that
no phone authenticates as them. A line's password is the one exception: it lives in the
record's `password` column, like a SIP password, but it is always kept whatever
`keep_sip_passwords` says, because the PBX answers the provider's digest challenges with it
and the provider's realm (which an HA1 would need) is only learnt from the first challenge;
the setting then only decides whether GetConfig shows it. Dial plan rules share the id
space (a rule cannot be named like an extension) but are not extensions: ListExtensions
leaves them out, GetConfig/ModifyConfig/RemoveConfig work on them as on any type.
"""

from __future__ import annotations

import dataclasses
import logging

from pypbx.api.config_xml import (
    API_SETTINGS,
    KNOWN_TYPES,
    SCHEMAS,
    ApiConfig,
    ConfigContentError,
    ConfigSyntaxError,
    SettingsConfig,
    SipConfig,
    canonical_type,
    check_api_fields,
    check_extension_id,
    check_fields,
    check_settings_fields,
    check_settings_record,
    parse_config,
    render_api_config,
    render_settings_config,
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
RULE_ORDER_STEP = 10  # an appended rule's Order: room to insert rules between later
MAX_RULE_ORDER = 999999


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


def _check_api(extension_type: str, fields: dict[str, str], *, require_all: bool) -> ApiConfig:
    try:
        return check_api_fields(fields, require_all=require_all)
    except ConfigContentError as exc:
        raise _invalid(extension_type, exc) from exc


def _check_settings(
    extension_type: str, fields: dict[str, str], *, require_all: bool
) -> SettingsConfig:
    try:
        return check_settings_fields(extension_type, fields, require_all=require_all)
    except ConfigContentError as exc:
        raise _invalid(extension_type, exc) from exc


async def _appended_order(ctx: CommandContext, rule_id: str) -> str:
    """The Order that puts a rule after every other (spec 9.2 default "append")."""
    orders = [
        int(order)
        for record in await ctx.store.list_extensions()
        if record.type == "DialPlanRule" and record.id != rule_id
        for order in [record.settings.get("Order")]
        if isinstance(order, str) and order.isascii() and order.isdigit()
    ]
    return str(min(max(orders, default=0) + RULE_ORDER_STEP, MAX_RULE_ORDER))


async def _complete(
    ctx: CommandContext,
    extension_type: str,
    ext_id: str,
    enabled: bool,
    settings: dict[str, object],
) -> None:
    """Fill in what depends on the other records, then check the whole configuration."""
    if extension_type == "DialPlanRule" and not settings.get("Order"):
        settings["Order"] = await _appended_order(ctx, ext_id)
    try:
        check_settings_record(extension_type, ext_id, enabled, settings)
    except ConfigContentError as exc:
        raise _invalid(extension_type, exc) from exc


async def _new_settings_record(
    ctx: CommandContext, extension_type: str, fields: dict[str, str]
) -> ExtensionRecord:
    config = _check_settings(extension_type, fields, require_all=True)
    ext_id, enabled = config.extension_id or "", bool(config.enabled)
    settings: dict[str, object] = dict(config.settings)
    await _complete(ctx, extension_type, ext_id, enabled, settings)
    return ExtensionRecord(
        id=ext_id,
        type=extension_type,
        enabled=enabled,
        user_id=config.user_id or "",
        password=config.password or None,
        settings=settings,
    )


async def _apply_settings(
    ctx: CommandContext, record: ExtensionRecord, config: SettingsConfig
) -> ExtensionRecord:
    """Partial update: absent elements keep their stored values, empty ones reset them."""
    enabled = record.enabled if config.enabled is None else config.enabled
    settings = {**record.settings, **dict(config.settings)}
    await _complete(ctx, record.type, record.id, enabled, settings)
    return dataclasses.replace(
        record,
        enabled=enabled,
        user_id=record.user_id if config.user_id is None else config.user_id,
        password=record.password if config.password is None else (config.password or None),
        settings=settings,
    )


def _new_sip_record(
    ctx: CommandContext, extension_type: str, fields: dict[str, str]
) -> ExtensionRecord:
    config = _check(extension_type, fields, require_all=True)
    # require_all guarantees every field; the `or` defaults only satisfy the type checker.
    auth_name, password = config.authorization_name or "", config.password or ""
    md5, sha256 = ha1_values(auth_name, ctx.settings.realm, password)
    return ExtensionRecord(
        id=config.extension_id or "",
        type=extension_type,
        enabled=bool(config.enabled),
        user_id=config.user_id or "",
        username=config.username or "",
        authorization_name=auth_name,
        password=password if ctx.settings.keep_sip_passwords else None,
        ha1_md5=md5,
        ha1_sha256=sha256,
    )


def _new_api_record(extension_type: str, fields: dict[str, str]) -> ExtensionRecord:
    config = _check_api(extension_type, fields, require_all=True)
    # Every setting is stored, unset ones empty, so the stored row is self-describing.
    settings: dict[str, object] = {key: "" for key in API_SETTINGS.values()}
    settings["allowed_users"] = []
    settings.update(config.settings)
    return ExtensionRecord(
        id=config.extension_id or "",
        type=extension_type,
        enabled=bool(config.enabled),
        user_id=config.user_id or "",
        settings=settings,
    )


async def add_config(ctx: CommandContext) -> list[Node]:
    extension_type = _extension_type(ctx)
    fields = _parse(ctx, extension_type)
    if extension_type == "API":
        record = _new_api_record(extension_type, fields)
    elif extension_type in SCHEMAS:
        record = await _new_settings_record(ctx, extension_type, fields)
    else:
        record = _new_sip_record(ctx, extension_type, fields)
    if await ctx.store.get_extension(record.id) is not None:
        raise ApiError(Status.CONFIG_ALREADY_EXISTS)
    try:
        await ctx.store.add_extension(record)
    except AlreadyExistsError as exc:  # created concurrently since the check above
        raise ApiError(Status.CONFIG_ALREADY_EXISTS) from exc
    logger.info("extension %s added", record.id)
    added = getattr(ctx.pbx, "extension_added", None)  # e.g. a new line starts registering
    if added is not None:
        await added(record.id)
    return []


def _apply_api(record: ExtensionRecord, config: ApiConfig) -> ExtensionRecord:
    """Partial update: absent elements keep their stored values, empty ones clear them."""
    return dataclasses.replace(
        record,
        enabled=record.enabled if config.enabled is None else config.enabled,
        user_id=record.user_id if config.user_id is None else config.user_id,
        settings={**record.settings, **dict(config.settings)},
    )


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
    if extension_type == "API":
        updated = _apply_api(record, _check_api(extension_type, fields, require_all=False))
    elif extension_type in SCHEMAS:
        config = _check_settings(extension_type, fields, require_all=False)
        updated = await _apply_settings(ctx, record, config)
    else:
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
    known = canonical_type(record.type)
    if known in SCHEMAS:
        return [
            render_settings_config(
                known,
                extension_id=record.id,
                enabled=record.enabled,
                user_id=record.user_id,
                settings=record.settings,
                password=record.password,
                show_password=ctx.settings.keep_sip_passwords,
            )
        ]
    if known == "API":
        return [
            render_api_config(
                extension_id=record.id,
                enabled=record.enabled,
                user_id=record.user_id,
                settings=record.settings,
            )
        ]
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
