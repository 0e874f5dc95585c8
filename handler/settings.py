"""Configuration: every environment variable the function reads, validated once into `Settings`."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

from handler.names import is_api_name

# The names users and tooling configure: template.yaml passes each of these, and a test keeps both in step.
SMC_ADMIN_URL = "SMC_ADMIN_URL"
SMC_ORGANIZATION = "SMC_ORGANIZATION"
SMC_EVENTS_LIST = "SMC_EVENTS_LIST"
SMC_ALLOWED_EVENTS = "SMC_ALLOWED_EVENTS"
SMC_SEND_PAGE_EVENTS = "SMC_SEND_PAGE_EVENTS"
SMC_SEND_SCREEN_EVENTS = "SMC_SEND_SCREEN_EVENTS"
SMC_SEND_ALIAS_EVENTS = "SMC_SEND_ALIAS_EVENTS"
SMC_SEND_GROUP_EVENTS = "SMC_SEND_GROUP_EVENTS"
SMC_EXTRA_ALLOWED_HOSTS = "SMC_EXTRA_ALLOWED_HOSTS"
SMC_SECRET_ID = "SMC_SECRET_ID"  # noqa: S105 - a variable name, not a secret
IDEMPOTENCY_TABLE = "IDEMPOTENCY_TABLE"
STATE_TABLE = "STATE_TABLE"
ORDERING_TTL_SECONDS = "ORDERING_TTL_SECONDS"
RESPONSE_DEADLINE_MS = "RESPONSE_DEADLINE_MS"
SECRET_MAX_AGE_SECONDS = "SECRET_MAX_AGE_SECONDS"  # noqa: S105 - a variable name
IDEMPOTENCY_TTL_SECONDS = "IDEMPOTENCY_TTL_SECONDS"
DELIVERY_MODE = "DELIVERY_MODE"
DELIVERY_QUEUE_URL = "DELIVERY_QUEUE_URL"
DEAD_LETTER_QUEUE_URL = "DEAD_LETTER_QUEUE_URL"
MAX_EVENT_AGE_SECONDS = "MAX_EVENT_AGE_SECONDS"
SMC_PROFILE_LIST = "SMC_PROFILE_LIST"
SMC_PROFILE_KEY = "SMC_PROFILE_KEY"
SMC_PROFILE_FIELDS = "SMC_PROFILE_FIELDS"
SMC_PROFILE_MODE = "SMC_PROFILE_MODE"
SMC_AUDIENCES = "SMC_AUDIENCES"
SMC_TRANSACTIONAL_EVENTS = "SMC_TRANSACTIONAL_EVENTS"
SMC_TRANSACTIONAL_LANGUAGE = "SMC_TRANSACTIONAL_LANGUAGE"
SMC_DELETE_PROFILES = "SMC_DELETE_PROFILES"

QUEUE_RETENTION_SECONDS = 14 * 86400  # the queues' MessageRetentionPeriod (template.yaml)
ORDERING_TTL_MARGIN_SECONDS = 86400

ENV_VARS: tuple[str, ...] = (
    SMC_ADMIN_URL,
    SMC_ORGANIZATION,
    SMC_EVENTS_LIST,
    SMC_ALLOWED_EVENTS,
    SMC_SEND_PAGE_EVENTS,
    SMC_SEND_SCREEN_EVENTS,
    SMC_SEND_ALIAS_EVENTS,
    SMC_SEND_GROUP_EVENTS,
    SMC_EXTRA_ALLOWED_HOSTS,
    SMC_SECRET_ID,
    IDEMPOTENCY_TABLE,
    STATE_TABLE,
    ORDERING_TTL_SECONDS,
    RESPONSE_DEADLINE_MS,
    SECRET_MAX_AGE_SECONDS,
    IDEMPOTENCY_TTL_SECONDS,
    DELIVERY_MODE,
    DELIVERY_QUEUE_URL,
    DEAD_LETTER_QUEUE_URL,
    MAX_EVENT_AGE_SECONDS,
    SMC_PROFILE_LIST,
    SMC_PROFILE_KEY,
    SMC_PROFILE_FIELDS,
    SMC_PROFILE_MODE,
    SMC_AUDIENCES,
    SMC_TRANSACTIONAL_EVENTS,
    SMC_TRANSACTIONAL_LANGUAGE,
    SMC_DELETE_PROFILES,
)

SMC_HOST_SUFFIXES = (".slgnt.us", ".slgnt.eu")
DeliveryMode = Literal["sync", "queued"]
ProfileMode = Literal["InsertAndUpdate", "OnlyUpdate"]
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}([_-][A-Za-z0-9]{2,8})?")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Profiles:
    """Profiles, audiences and transactional messages on the SMC user list (`SMC_PROFILE_*`)."""

    list_name: str
    key: str  # the business-key column, matched to Segment's userId
    fields: tuple[tuple[str, tuple[str, ...]], ...]  # (column, dotted path split) in setting order
    mode: ProfileMode = "InsertAndUpdate"
    audiences: bool = True
    transactional: tuple[tuple[str, str], ...] = ()  # (track event name, journey api name)
    language: str = ""  # for a transactional event that carries none
    delete_profiles: bool = True

    def journey_for(self, event_name: str) -> str | None:
        """The transactional journey a track event triggers, if any."""
        for name, journey in self.transactional:
            if name == event_name:
                return journey
        return None


@dataclass(frozen=True, slots=True)
class Settings:
    """The destination's configuration, read once per process."""

    smc_base_url: str
    organization: str
    events_list: str
    allowed_events: frozenset[str] | None  # None = every track event
    send_page_events: bool
    send_screen_events: bool
    send_alias_events: bool
    send_group_events: bool
    secret_id: str
    idempotency_table: str
    state_table: str = ""  # ordering records (handler.ordering); empty: no order safety
    ordering_ttl_seconds: int = 7 * 86400
    response_deadline_ms: int = 4500
    secret_max_age_seconds: int = 300
    idempotency_ttl_seconds: int = 86400
    delivery_mode: DeliveryMode = "sync"
    delivery_queue_url: str = ""
    dead_letter_queue_url: str = ""
    max_event_age_seconds: int = 4 * 86400  # queued mode: retried until this old
    profiles: Profiles | None = None  # None: SMC_PROFILE_LIST is empty

    def track_allowed(self, event_name: str) -> bool:
        """Whether a track event passes the `SMC_ALLOWED_EVENTS` allowlist."""
        return self.allowed_events is None or event_name in self.allowed_events


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is required")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _csv(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_admin_url(raw: str, extra_hosts: frozenset[str]) -> str:
    """Return the SMC API base URL (`…/Portal/Api`) for an admin URL, or raise `SettingsError`.

    Only SMC's own domains (or hosts an operator lists explicitly) are accepted, so a typo or a
    hostile value can never send credentials elsewhere; plain http is allowed for loopback only.
    """
    parts = urlsplit(raw.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme not in {"https", "http"} or not host:
        raise SettingsError(f"{SMC_ADMIN_URL} must be an https:// URL, got {raw!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise SettingsError(f"{SMC_ADMIN_URL} must not carry credentials, a query or a fragment")
    path = parts.path.rstrip("/")
    if path.lower() == "/portal/api":
        path = ""
    if path:
        raise SettingsError(f"{SMC_ADMIN_URL} must be the tenant's root URL, e.g. https://acme.slgnt.us")
    if not (host.endswith(SMC_HOST_SUFFIXES) or host in extra_hosts):
        raise SettingsError(
            f"{SMC_ADMIN_URL} host {host!r} is not an SMC host (*.slgnt.us, *.slgnt.eu); "
            f"list it in {SMC_EXTRA_ALLOWED_HOSTS} if it is a sandbox"
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise SettingsError(f"{SMC_ADMIN_URL} must use https:// (plain http:// only for loopback hosts)")
    try:
        port = parts.port
    except ValueError:
        raise SettingsError(f"{SMC_ADMIN_URL} has an invalid port") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}/Portal/Api"


def _json_object(env: Mapping[str, str], name: str) -> dict[str, str]:
    raw = env.get(name, "").strip()
    if not raw:
        return {}

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json.loads keeps the last of repeated keys: a mapping that says two things is refused.
        seen: dict[str, Any] = {}
        for key, item in pairs:
            if key in seen:
                raise SettingsError(f"{name} names {key!r} twice")
            seen[key] = item
        return seen

    try:
        value = json.loads(raw, object_pairs_hook=unique)
    except SettingsError:
        raise
    except ValueError:
        raise SettingsError(f"{name} must be a JSON object") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
    ):
        raise SettingsError(f"{name} must be a JSON object of non-empty strings")
    return value


def _api_name(env: Mapping[str, str], name: str, value: str, what: str) -> str:
    if not is_api_name(value):
        raise SettingsError(f"{name}: {what} {value!r} is not an SMC api name (letters, digits, _ or -)")
    return value


def _profiles(env: Mapping[str, str]) -> Profiles | None:
    list_name = env.get(SMC_PROFILE_LIST, "").strip()
    if not list_name:
        return None
    _api_name(env, SMC_PROFILE_LIST, list_name, "list")
    key = _api_name(env, SMC_PROFILE_KEY, _required(env, SMC_PROFILE_KEY), "column")
    fields: list[tuple[str, tuple[str, ...]]] = []
    columns: dict[str, str] = {}
    for column, path in _json_object(env, SMC_PROFILE_FIELDS).items():
        _api_name(env, SMC_PROFILE_FIELDS, column, "column")
        # SMC column names are case-insensitive: MAIL and mail are one column, named twice in a
        # load, which SMC refuses for every row.
        if column.upper() in columns:
            raise SettingsError(
                f"{SMC_PROFILE_FIELDS}: {column} and {columns[column.upper()]} are one SMC column "
                "(names are case-insensitive)"
            )
        columns[column.upper()] = column
        if column.upper() == key.upper():
            raise SettingsError(f"{SMC_PROFILE_FIELDS}: {column} is {SMC_PROFILE_KEY}, always userId")
        parts = tuple(path.split("."))
        if not all(part.strip() for part in parts):
            raise SettingsError(
                f"{SMC_PROFILE_FIELDS}: the path of {column} must be dotted names, got {path!r}"
            )
        fields.append((column, parts))
    mode = env.get(SMC_PROFILE_MODE, "").strip() or "InsertAndUpdate"
    if mode not in ("InsertAndUpdate", "OnlyUpdate"):
        raise SettingsError(f"{SMC_PROFILE_MODE} must be InsertAndUpdate or OnlyUpdate, got {mode!r}")
    transactional = tuple(
        (event, _api_name(env, SMC_TRANSACTIONAL_EVENTS, journey, "journey"))
        for event, journey in _json_object(env, SMC_TRANSACTIONAL_EVENTS).items()
    )
    language = env.get(SMC_TRANSACTIONAL_LANGUAGE, "").strip()
    if language and not _LANGUAGE.fullmatch(language):
        raise SettingsError(
            f"{SMC_TRANSACTIONAL_LANGUAGE} must be a language code such as EN, got {language!r}"
        )
    return Profiles(
        list_name=list_name,
        key=key,
        fields=tuple(fields),
        mode="OnlyUpdate" if mode == "OnlyUpdate" else "InsertAndUpdate",
        audiences=_bool(env, SMC_AUDIENCES, True),
        transactional=transactional,
        language=language,
        delete_profiles=_bool(env, SMC_DELETE_PROFILES, True),
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise `SettingsError` naming the first bad variable."""
    env = os.environ if env is None else env
    extra_hosts = frozenset(host.lower() for host in _csv(env.get(SMC_EXTRA_ALLOWED_HOSTS, "")))
    allowed_raw = env.get(SMC_ALLOWED_EVENTS, "").strip()
    allowed = None if allowed_raw in {"", "*"} else frozenset(_csv(allowed_raw))
    events_list = env.get(SMC_EVENTS_LIST, "").strip() or "segment_events"
    if not is_api_name(events_list):
        raise SettingsError(f"{SMC_EVENTS_LIST} must be an SMC api name (letters, digits, _ or -)")
    mode = env.get(DELIVERY_MODE, "").strip().lower() or "sync"
    if mode not in ("sync", "queued"):
        raise SettingsError(f"{DELIVERY_MODE} must be sync or queued, got {mode!r}")
    queue_url = env.get(DELIVERY_QUEUE_URL, "").strip()
    if mode == "queued" and not queue_url:
        raise SettingsError(f"{DELIVERY_QUEUE_URL} is required when {DELIVERY_MODE} is queued")
    ordering_ttl = _int(env, ORDERING_TTL_SECONDS, 7 * 86400, 86400, 365 * 86400)
    # At most the queue's 14-day retention: a dead letter must still be there to redrive.
    max_event_age = _int(env, MAX_EVENT_AGE_SECONDS, 4 * 86400, 3600, QUEUE_RETENTION_SECONDS)
    if mode == "queued":
        # An ordering record must outlive every retry of the changes it orders, or a change
        # retried after it expired could undo a newer one: records then last the event age too.
        ordering_ttl = max(ordering_ttl, max_event_age + ORDERING_TTL_MARGIN_SECONDS)
    organization = _required(env, SMC_ORGANIZATION)
    if not is_api_name(organization):
        raise SettingsError(f"{SMC_ORGANIZATION} must be an SMC organization name (letters, digits, _ or -)")
    return Settings(
        smc_base_url=validate_admin_url(_required(env, SMC_ADMIN_URL), extra_hosts),
        organization=organization,
        events_list=events_list,
        allowed_events=allowed,
        send_page_events=_bool(env, SMC_SEND_PAGE_EVENTS, True),
        send_screen_events=_bool(env, SMC_SEND_SCREEN_EVENTS, True),
        send_alias_events=_bool(env, SMC_SEND_ALIAS_EVENTS, True),
        send_group_events=_bool(env, SMC_SEND_GROUP_EVENTS, True),
        secret_id=_required(env, SMC_SECRET_ID),
        idempotency_table=_required(env, IDEMPOTENCY_TABLE),
        state_table=env.get(STATE_TABLE, "").strip(),
        # Must outlast Segment's 4-hour retry window with margin (and queued mode's event age).
        ordering_ttl_seconds=ordering_ttl,
        response_deadline_ms=_int(env, RESPONSE_DEADLINE_MS, 4500, 500, 29000),
        secret_max_age_seconds=_int(env, SECRET_MAX_AGE_SECONDS, 300, 0, 3600),
        idempotency_ttl_seconds=_int(env, IDEMPOTENCY_TTL_SECONDS, 86400, 4 * 3600 + 60, 30 * 86400),
        delivery_mode="queued" if mode == "queued" else "sync",
        delivery_queue_url=queue_url,
        dead_letter_queue_url=env.get(DEAD_LETTER_QUEUE_URL, "").strip(),
        max_event_age_seconds=max_event_age,
        profiles=_profiles(env),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (tests call `get_settings.cache_clear()`)."""
    return load_settings()
