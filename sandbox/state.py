"""The sandbox's state behind one lock: service accounts, organizations, lists, the request log,
and the default seed."""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .journeys import DEFAULT_LANGUAGES, LANGUAGES, Journey, send, unknown_journey
from .model import (
    API_NAME,
    LIST_TYPES,
    SEGMENT_TYPES,
    CreationFailed,
    FieldDef,
    JsonDict,
    Segment,
    SmcList,
    delete_batch,
    load_batch,
    not_found,
    validation_failed,
)

_LOG_LIMIT = 100_000  # benchmarks send many requests; keep memory bounded


@dataclass(frozen=True)
class RecordedRequest:
    """One SMC API request as the sandbox saw it (headers, and so the API key, are never kept)."""

    method: str
    path: str
    query: dict[str, str]
    rows: int | None  # data rows in the body (header row excluded), None when the body is not rows
    status: int | None  # None: the connection was dropped without a response
    fault: bool = False  # an injected fault shaped the answer


class SandboxState:
    """All sandbox data behind one lock; every public method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._accounts: set[tuple[str, str]] = set()
        self._generation = 0
        self._orgs: dict[str, dict[str, SmcList]] = {}
        self._journeys: dict[str, dict[str, Journey]] = {}  # org → lower-cased api name → journey
        self._log: collections.deque[RecordedRequest] = collections.deque(maxlen=_LOG_LIMIT)
        self._next_list_id = 1
        # "partial": valid rows load and invalid ones are named (200 PartiallySucceeded);
        # "all_or_nothing": one invalid row refuses the whole request (400, nothing applied).
        self.validation = "partial"

    @property
    def generation(self) -> int:
        """Changes at every reset: a request that outlives a reset must not touch the new state."""
        with self._lock:
            return self._generation

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._accounts.clear()
            self._orgs.clear()
            self._journeys.clear()
            self._log.clear()
            self._next_list_id = 1
            self.validation = "partial"

    # -- service accounts ------------------------------------------------------------------
    def add_service_account(self, key: str, secret: str) -> None:
        with self._lock:
            self._accounts.add((key, secret))

    def remove_service_account(self, key: str) -> None:
        with self._lock:
            self._accounts = {pair for pair in self._accounts if pair[0] != key}

    def authenticate(self, key: str, secret: str) -> bool:
        with self._lock:
            return (key, secret) in self._accounts

    # -- structure -------------------------------------------------------------------------
    def add_organization(self, name: str) -> None:
        if not name:
            raise validation_failed("Organization name must not be empty")
        with self._lock:
            self._orgs.setdefault(name, {})

    def organization(self, org: str) -> JsonDict:
        with self._lock:
            self._org(org)
            return {
                "name": org,
                "default_languages": list(DEFAULT_LANGUAGES),
                "languages": [dict(language) for language in LANGUAGES],
            }

    def add_list(
        self,
        org: str,
        api_name: str,
        fields: Iterable[Mapping[str, Any]] = (),
        type: str = "Datalist",
        name: str | None = None,
    ) -> None:
        specs = [FieldDef.from_spec(spec) for spec in fields]
        if not API_NAME.fullmatch(api_name):
            raise validation_failed(f"Invalid list api_name {api_name!r}")
        if type not in LIST_TYPES:
            raise validation_failed(f"Unknown list type {type!r}")
        with self._lock:
            lists = self._org(org)
            if api_name in lists:
                raise validation_failed(f"A list with api_name '{api_name}' already exists")
            lst = SmcList(self._next_list_id, api_name, name or api_name, type)
            _add_fields(lst, specs)
            lists[api_name] = lst
            self._next_list_id += 1

    def add_fields(self, org: str, list_name: str, fields: Iterable[Mapping[str, Any]]) -> None:
        specs = [FieldDef.from_spec(spec) for spec in fields]
        with self._lock:
            _add_fields(self._list(org, list_name), specs)

    def remove_field(self, org: str, list_name: str, name: str) -> None:
        with self._lock:
            self._list(org, list_name).remove_field(name)

    def add_segment(
        self,
        org: str,
        list_name: str,
        api_name: str,
        segment_type: str = "Static",
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        """Seed a segment, or create one as POST …/segments/static does (400 `Failed` if it exists)."""
        if segment_type not in SEGMENT_TYPES:
            raise validation_failed(f"Unknown segment type {segment_type!r}")
        if not API_NAME.fullmatch(api_name):
            raise CreationFailed("ERR_VALIDATION", f"Invalid segment api_name {api_name!r}")
        with self._lock:
            lst = self._list(org, list_name)
            if api_name.lower() in lst.segments:  # SMC api names are case-insensitive
                message = f"A segment with api_name '{api_name}' already exists on list '{lst.api_name}'"
                raise CreationFailed("ERR_ALREADY_EXISTS", message)
            lst.segments[api_name.lower()] = Segment(api_name, name or api_name, segment_type, description)

    def add_journey(self, org: str, api_name: str, list_name: str, name: str | None = None) -> None:
        """Seed a transactional journey whose MASTER scope is the user list `list_name`."""
        if not API_NAME.fullmatch(api_name):
            raise validation_failed(f"Invalid journey api_name {api_name!r}")
        with self._lock:
            lst = self._list(org, list_name)
            journeys = self._journeys.setdefault(org, {})
            if api_name.lower() in journeys:
                raise validation_failed(f"A journey with api_name '{api_name}' already exists")
            journeys[api_name.lower()] = Journey(api_name, name or api_name, lst)

    # -- inspection ------------------------------------------------------------------------
    def lists(self, org: str, type_filter: str | None = None) -> list[JsonDict]:
        with self._lock:
            return [
                {"id": lst.id, "type": lst.type, "api_name": lst.api_name, "name": lst.name}
                for lst in self._org(org).values()
                if type_filter in (None, "", lst.type)
            ]

    def list_info(self, org: str, list_name: str) -> JsonDict:
        with self._lock:
            lst = self._list(org, list_name)
            return {
                "api_name": lst.api_name,
                "name": lst.name,
                "type": lst.type,
                "description": None,
                "tags": [],
                "organizations": [org],
            }

    def fields(self, org: str, list_name: str) -> list[JsonDict]:
        with self._lock:
            return [f.to_json() for f in self._list(org, list_name).columns.values()]

    def segments(self, org: str, list_name: str, skip: int = 0, take: int | None = None) -> list[JsonDict]:
        """The list's segments in creation order; `skip`/`take` select one page, as SMC pages them."""
        with self._lock:
            every = list(self._list(org, list_name).segments.values())
            page = every[skip:] if take is None else every[skip : skip + take]
            return [segment.item() for segment in page]

    def segment_info(self, org: str, list_name: str, segment: str) -> JsonDict:
        with self._lock:
            return self._segment(self._list(org, list_name), segment, False).details()

    def journeys(self, org: str) -> list[JsonDict]:
        with self._lock:
            self._org(org)
            return [journey.item() for journey in self._journeys.get(org, {}).values()]

    def journey_info(self, org: str, api_name: str) -> JsonDict:
        with self._lock:
            return self._journey(org, api_name).details()

    def messages(self, org: str, api_name: str) -> list[JsonDict]:
        """Every message the journey sent, oldest first."""
        with self._lock:
            return [dataclasses.asdict(m) for m in self._journey(org, api_name).messages]

    def rows(self, org: str, list_name: str) -> list[JsonDict]:
        with self._lock:
            return [dict(row) for row in self._list(org, list_name).rows.values()]

    def segment_members(self, org: str, list_name: str, segment: str) -> list[JsonDict]:
        with self._lock:
            lst = self._list(org, list_name)
            return [dict(lst.rows[rid]) for rid in sorted(self._segment(lst, segment, False).members)]

    # -- data operations (the body is the parsed JSON; see the module docstring for indexes) --
    def load(
        self, org: str, list_name: str, segment: str | None, query: Mapping[str, str], body: Any
    ) -> JsonDict:
        with self._lock:
            lst = self._list(org, list_name)
            seg = self._segment(lst, segment, True) if segment is not None else None
            return load_batch(lst, seg, query, body, self.validation == "all_or_nothing")

    def delete(
        self, org: str, list_name: str, segment: str | None, query: Mapping[str, str], body: Any
    ) -> JsonDict:
        with self._lock:
            lst = self._list(org, list_name)
            seg = self._segment(lst, segment, True) if segment is not None else None
            return delete_batch(lst, seg, query, body, self.validation == "all_or_nothing")

    def send(self, org: str, api_name: str, body: Any) -> tuple[int, JsonDict]:
        """POST /journeys/transactional/{api_name}/send: 404 in the send answer's shape if unknown."""
        with self._lock:
            journey = self._find_journey(org, api_name)
            if journey is None:
                return 404, unknown_journey(api_name)
            return 200, send(journey, body)

    def clear_segment(self, org: str, list_name: str, segment: str) -> JsonDict:
        with self._lock:
            self._segment(self._list(org, list_name), segment, True).members.clear()
            return {"result_code": "Succeeded", "message": "The data has been cleared successfully."}

    # -- request log -----------------------------------------------------------------------
    def record(self, entry: RecordedRequest, generation: int | None = None) -> None:
        with self._lock:
            if generation is None or generation == self._generation:
                self._log.append(entry)

    @property
    def requests_log(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- lookups (callers hold the lock) ----------------------------------------------------
    def _org(self, org: str) -> dict[str, SmcList]:
        lists = self._orgs.get(org)
        if lists is None:
            raise not_found(f"Organization '{org}' not found")
        return lists

    def _list(self, org: str, list_name: str) -> SmcList:
        lst = self._org(org).get(list_name)
        if lst is None:
            raise not_found(f"List '{list_name}' not found in organization '{org}'")
        return lst

    def _find_journey(self, org: str, api_name: str) -> Journey | None:
        self._org(org)
        return self._journeys.get(org, {}).get(api_name.lower())

    def _journey(self, org: str, api_name: str) -> Journey:
        journey = self._find_journey(org, api_name)
        if journey is None:
            raise not_found(f"Transactional journey '{api_name}' not found")
        return journey

    @staticmethod
    def _segment(lst: SmcList, segment: str, static_only: bool) -> Segment:
        seg = lst.segments.get(segment.lower())
        if seg is None or (static_only and seg.segment_type != "Static"):
            raise not_found(f"Static segment '{segment}' not found on list '{lst.api_name}'")
        return seg


def _add_fields(lst: SmcList, specs: list[FieldDef]) -> None:
    # Check everything first so a rejected request adds no field at all.
    seen: set[str] = set()
    for spec in specs:
        if spec.name.upper() in lst.columns or spec.name.upper() in seen:
            raise validation_failed(f"Field '{spec.name}' already exists on list '{lst.api_name}'")
        seen.add(spec.name.upper())
    for spec in specs:
        lst.add_field(spec)


class Seedable(Protocol):
    """What `seed_default` needs: implemented by both `SandboxState` and `SmcSandbox`."""

    def add_service_account(self, key: str, secret: str) -> None: ...
    def add_organization(self, name: str) -> None: ...
    def add_list(
        self,
        org: str,
        api_name: str,
        fields: Iterable[Mapping[str, Any]] = (),
        type: str = "Datalist",
        name: str | None = None,
    ) -> None: ...
    def add_segment(
        self,
        org: str,
        list_name: str,
        api_name: str,
        segment_type: str = "Static",
        name: str | None = None,
        description: str | None = None,
    ) -> None: ...
    def add_journey(self, org: str, api_name: str, list_name: str, name: str | None = None) -> None: ...


# The default seed's schema, in one place so it can later come from handler/schema.py.
DEFAULT_ORG = "demo"
DEFAULT_SERVICE_ACCOUNT = ("demo-key", "demo-secret")
EVENTS_LIST = "segment_events"
USERS_LIST = "users"
VIP_SEGMENT = "vip"
ORDER_JOURNEY = "order_confirmation"
EVENTS_FIELDS: tuple[JsonDict, ...] = (
    {"name": "MESSAGE_ID", "data_type": "Text", "length": 100, "allow_null": False},
    {"name": "EVENT_TYPE", "data_type": "Text", "length": 20, "allow_null": True},
    {"name": "EVENT_NAME", "data_type": "Text", "length": 255, "allow_null": True},
    {"name": "USER_ID", "data_type": "Text", "length": 255, "allow_null": True},
    {"name": "ANONYMOUS_ID", "data_type": "Text", "length": 255, "allow_null": True},
    {"name": "PREVIOUS_ID", "data_type": "Text", "length": 255, "allow_null": True},
    {"name": "EVENT_TIMESTAMP", "data_type": "DateTime", "allow_null": True},
    {"name": "RECEIVED_AT", "data_type": "DateTime", "allow_null": True},
    {"name": "PROPERTIES", "data_type": "LongText", "length": 0, "allow_null": True},
    {"name": "CONTEXT", "data_type": "LongText", "length": 0, "allow_null": True},
)
USERS_FIELDS: tuple[JsonDict, ...] = (
    {"name": "ID", "data_type": "Long", "allow_null": True},
    {"name": "MAIL", "data_type": "Text", "length": 255, "allow_null": True},
    {"name": "CUSTOMER_ID", "data_type": "Text", "length": 255, "allow_null": True},
    # The columns events/env.json's example SMC_PROFILE_FIELDS maps traits and context into.
    {"name": "FIRSTNAME", "data_type": "Text", "length": 100, "allow_null": True},
    {"name": "CITY", "data_type": "Text", "length": 100, "allow_null": True},
    {"name": "LOCALE", "data_type": "Text", "length": 35, "allow_null": True},  # RFC 5646's advised room
)


def seed_users(target: Seedable, org: str) -> None:
    """The user list `users`, its static segment `vip` and the journey `order_confirmation` on it."""
    target.add_list(org, USERS_LIST, USERS_FIELDS, type="Userlist", name="Users")
    target.add_segment(org, USERS_LIST, VIP_SEGMENT, "Static", name="VIP")
    target.add_journey(org, ORDER_JOURNEY, USERS_LIST, name="Order confirmation")


def seed_default(target: Seedable) -> None:
    """Org `demo`, account `demo-key:demo-secret`, the list `segment_events`, and `seed_users`."""
    target.add_service_account(*DEFAULT_SERVICE_ACCOUNT)
    target.add_organization(DEFAULT_ORG)
    target.add_list(DEFAULT_ORG, EVENTS_LIST, EVENTS_FIELDS, type="Datalist", name="Segment events")
    seed_users(target, DEFAULT_ORG)
