"""Route tables: SMC's v1 endpoints (path → state call) and the sandbox's admin API.

Admin API under /_sandbox/ (no SMC auth; JSON in and out; the server binds to loopback by default):
  POST   /_sandbox/reset                      clear everything; body {"seed": "default"} seeds again
  POST   /_sandbox/seed                       {"preset": "default", "service_accounts": [{key, secret}],
                                              "organizations": [name], "lists": [{org, api_name, fields,
                                              type, name}], "segments": [{org, list, api_name,
                                              segment_type, name, description}], "journeys": [{org,
                                              api_name, name, list}]} (every key optional)
  POST   /_sandbox/service-accounts           {key, secret}
  DELETE /_sandbox/service-accounts/{key}
  GET    /_sandbox/organizations/{org}/lists/{list}/rows                    → {"rows": [...]}
  GET    /_sandbox/organizations/{org}/lists/{list}/segments/{seg}/members  → {"members": [...]}
  GET    /_sandbox/organizations/{org}/journeys/{journey}/messages          → {"messages": [...]}
  GET    /_sandbox/requests  (DELETE clears)                                → {"requests": [...]}
  GET    /_sandbox/faults    POST /_sandbox/faults {Fault fields}  DELETE /_sandbox/faults
  GET    /_sandbox/latency   PUT /_sandbox/latency {"latency_s": 0.2}
  GET    /_sandbox/validation  PUT /_sandbox/validation {"mode": "partial" | "all_or_nothing"}
  DELETE /_sandbox/organizations/{org}/lists/{list}/fields/{field}           drop a column
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from .faults import Fault
from .model import CreationFailed, SmcError, not_found, page_bounds, validation_failed
from .state import SandboxState, seed_default

if TYPE_CHECKING:
    from .server import SmcSandbox

API_PREFIX = "/portal/api"  # compared lower-cased: ASP.NET routes are case-insensitive
ADMIN_PREFIX = "/_sandbox"
BAD_JSON: Any = object()  # stands for a body that did not parse, so routes can answer 400
Reply = tuple[int, Any]
# Segments per page when a GET …/segments names no `take`: SMC answers one page, not all of them.
# The Swagger gives no number; 20 is the sandbox's choice.
SEGMENTS_PAGE_SIZE = 20
SmcRoute = Callable[[SandboxState, list[str], Mapping[str, str], Any], Reply]
AdminRoute = Callable[["SmcSandbox", list[str], Any], Reply]
_R = TypeVar("_R")


def resolve(
    routes: Sequence[tuple[str, tuple[str, ...], _R]], method: str, parts: list[str]
) -> tuple[_R, list[str]]:
    """Find the route for `method` and the path `parts`; `*` in a pattern captures one part."""
    other_method = False
    for route_method, pattern, route in routes:
        if len(pattern) != len(parts):
            continue
        args = [part for want, part in zip(pattern, parts, strict=True) if want == "*"]
        if all(want in ("*", part.lower()) for want, part in zip(pattern, parts, strict=True)):
            if route_method == method:
                return route, args
            other_method = True
    if other_method:
        raise SmcError(405, "Failed", "ERR_METHOD_NOT_ALLOWED", f"Method {method} is not allowed here")
    raise not_found("No such endpoint")


def _split_path(path: str, prefix: str) -> list[str]:
    rest = path[len(prefix) :].strip("/")
    return [unquote(part) for part in rest.split("/")] if rest else []


def handle_smc(
    state: SandboxState,
    method: str,
    path: str,
    query: Mapping[str, str],
    credentials: tuple[str, str] | None,
    body: Any,
) -> Reply:
    """Answer one request whose path starts with /Portal/Api; errors become SMC-shaped JSON."""
    parts = _split_path(path, API_PREFIX)
    try:
        if method == "GET" and [p.lower() for p in parts] == ["status"]:
            return 200, {"status": "OK"}
        if credentials is None or not state.authenticate(*credentials):
            raise SmcError(401, "Failed", "ERR_AUTHENTICATION", "Invalid or missing API key and secret")
        route, args = resolve(SMC_ROUTES, method, parts)
        if body is BAD_JSON:
            raise validation_failed("The request body is not valid JSON")
        return route(state, args, query, body)
    except SmcError as exc:
        return exc.status, exc.body()


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise validation_failed("The body must be a JSON object")
    return body


def _text(spec: Mapping[str, Any], key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise validation_failed(f"'{key}' is required and must be a string")
    return value


def _create_list(state: SandboxState, a: list[str], q: Mapping[str, str], body: Any) -> Reply:
    spec = _object(body)
    state.add_list(a[0], _text(spec, "api_name"), (), _text(spec, "type"), _text(spec, "name"))
    # The Swagger file documents 200 (not 201) for a created list.
    return 200, {"result_code": "Succeeded", "message": "List created successfully."}


def _create_fields(state: SandboxState, a: list[str], q: Mapping[str, str], body: Any) -> Reply:
    fields = _object(body).get("fields")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, dict) for f in fields):
        raise validation_failed("'fields' must be a non-empty array of field objects")
    state.add_fields(a[0], a[1], fields)
    return 201, {"result_code": "Succeeded", "message": "Fields created successfully."}


def _segments(state: SandboxState, a: list[str], q: Mapping[str, str], body: Any) -> Reply:
    skip, take = page_bounds(q, SEGMENTS_PAGE_SIZE)
    segments = state.segments(a[0], a[1], skip, take)
    return 200, {"segments": segments, "segment_count": len(segments)}


def _create_static_segment(state: SandboxState, a: list[str], q: Mapping[str, str], body: Any) -> Reply:
    """POST …/segments/static: `api_name` and `name` required (the Swagger's model), `description`
    and `tags` optional; every refusal is a 400 `Failed` as the Swagger documents it."""
    spec = body if isinstance(body, dict) else {}
    api_name, name, description = spec.get("api_name"), spec.get("name"), spec.get("description")
    tags = spec.get("tags")
    for key, value in (("api_name", api_name), ("name", name)):
        if not isinstance(value, str) or not value.strip():
            raise CreationFailed("ERR_VALIDATION", f"'{key}' is required and must be a string")
    if description is not None and not isinstance(description, str):
        raise CreationFailed("ERR_VALIDATION", "'description' must be a string")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise CreationFailed("ERR_VALIDATION", "'tags' must be an array of strings")
    state.add_segment(a[0], a[1], str(api_name), "Static", str(name), description)
    return 200, {"result_code": "Succeeded", "message": "The static segment has been created successfully."}


def _save_record(state: SandboxState, a: list[str], q: Mapping[str, str], body: Any) -> Reply:
    """POST .../data?keyfields=…: upsert one record given as an object, via the load rules."""
    values = _object(body)
    keys = next((v for k, v in q.items() if k.lower() == "keyfields"), "")
    query = {"keyFields": keys, "fields": ",".join(values)}
    result = state.load(a[0], a[1], None, query, [list(values.values())])
    if result["invalid_records"]:
        raise validation_failed(*(r["message"] for r in result["invalid_records"]))
    verb = "inserted" if result["number_of_inserted_records"] else "updated"
    return 200, {"result_code": "Succeeded", "message": f"Record {verb} on list {a[1]}."}


_ORG = ("organizations", "*")
_LIST = (*_ORG, "lists", "*")
_SEGMENT = (*_LIST, "segments", "*")
_JOURNEYS = (*_ORG, "journeys", "transactional")
SMC_ROUTES: tuple[tuple[str, tuple[str, ...], SmcRoute], ...] = (
    ("GET", _ORG, lambda s, a, q, b: (200, s.organization(a[0]))),
    ("GET", (*_ORG, "lists"), lambda s, a, q, b: (200, {"lists": s.lists(a[0], q.get("filter"))})),
    ("POST", (*_ORG, "lists"), _create_list),
    ("GET", _LIST, lambda s, a, q, b: (200, s.list_info(a[0], a[1]))),
    ("GET", (*_LIST, "fields"), lambda s, a, q, b: (200, {"fields": s.fields(a[0], a[1])})),
    ("POST", (*_LIST, "fields"), _create_fields),
    ("GET", (*_LIST, "segments"), _segments),
    ("POST", (*_LIST, "segments", "static"), _create_static_segment),
    ("GET", _SEGMENT, lambda s, a, q, b: (200, s.segment_info(a[0], a[1], a[2]))),
    ("POST", (*_LIST, "data"), _save_record),
    ("POST", (*_LIST, "data", "load"), lambda s, a, q, b: (200, s.load(a[0], a[1], None, q, b))),
    ("DELETE", (*_LIST, "data"), lambda s, a, q, b: (200, s.delete(a[0], a[1], None, q, b))),
    ("POST", (*_SEGMENT, "data", "load"), lambda s, a, q, b: (200, s.load(a[0], a[1], a[2], q, b))),
    ("DELETE", (*_SEGMENT, "data"), lambda s, a, q, b: (200, s.delete(a[0], a[1], a[2], q, b))),
    ("DELETE", (*_SEGMENT, "data", "clear"), lambda s, a, q, b: (200, s.clear_segment(a[0], a[1], a[2]))),
    ("GET", _JOURNEYS, lambda s, a, q, b: (200, {"journeys": s.journeys(a[0])})),
    ("GET", (*_JOURNEYS, "*"), lambda s, a, q, b: (200, s.journey_info(a[0], a[1]))),
    ("POST", (*_JOURNEYS, "*", "send"), lambda s, a, q, b: s.send(a[0], a[1], b)),
)


# -- admin API ----------------------------------------------------------------------------------
def handle_admin(sandbox: SmcSandbox, method: str, path: str, body: Any) -> Reply:
    """Answer one /_sandbox/ request; bad input is a 400 with {"error": ...}."""
    try:
        route, args = resolve(ADMIN_ROUTES, method, _split_path(path, ADMIN_PREFIX))
        if body is BAD_JSON:
            raise ValueError("The request body is not valid JSON")
        return route(sandbox, args, body)
    except SmcError as exc:
        return exc.status, exc.body()
    except (TypeError, ValueError, KeyError) as exc:
        return 400, {"error": f"{type(exc).__name__}: {exc}"}


def _seed(sandbox: SmcSandbox, doc: Any) -> None:
    if not isinstance(doc, dict):
        raise ValueError("the seed body must be a JSON object")
    preset = doc.get("preset")
    if preset not in (None, "default"):
        raise ValueError(f"unknown preset {preset!r}")
    if preset == "default":
        seed_default(sandbox)
    for account in doc.get("service_accounts", []):
        sandbox.add_service_account(account["key"], account["secret"])
    for org in doc.get("organizations", []):
        sandbox.add_organization(org)
    for lst in doc.get("lists", []):
        sandbox.add_list(
            lst["org"], lst["api_name"], lst.get("fields", []), lst.get("type", "Datalist"), lst.get("name")
        )
    for seg in doc.get("segments", []):
        sandbox.add_segment(
            seg["org"],
            seg["list"],
            seg["api_name"],
            seg.get("segment_type", "Static"),
            seg.get("name"),
            seg.get("description"),
        )
    for journey in doc.get("journeys", []):
        sandbox.add_journey(journey["org"], journey["api_name"], journey["list"], journey.get("name"))


def _reset(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    sandbox.reset()
    if isinstance(body, dict) and body.get("seed") is not None:
        _seed(sandbox, {"preset": body["seed"]})
    return 200, {"result": "reset"}


def _set_latency(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    latency = _object(body).get("latency_s")
    if not isinstance(latency, int | float) or isinstance(latency, bool) or latency < 0:
        raise ValueError("latency_s must be a number >= 0")
    sandbox.latency_s = float(latency)
    return 200, {"latency_s": sandbox.latency_s}


def _set_validation(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    sandbox.validation = str(_object(body).get("mode"))
    return 200, {"mode": sandbox.validation}


def _remove_field(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    sandbox.remove_field(a[0], a[1], a[2])
    return 200, {"result": "removed"}


def _inject(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    sandbox.inject(Fault.from_json(_object(body)))
    return 201, {"faults": [f.to_json() for f in sandbox.faults.active()]}


def _seed_route(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    _seed(sandbox, body)
    return 200, {"result": "seeded"}


def _add_account(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    spec = _object(body)
    sandbox.add_service_account(_text(spec, "key"), _text(spec, "secret"))
    return 201, {"result": "added"}


def _remove_account(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    sandbox.remove_service_account(a[0])
    return 200, {"result": "removed"}


def _requests(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    return 200, {"requests": [dataclasses.asdict(r) for r in sandbox.requests_log]}


def _clear_requests(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    sandbox.clear_requests_log()
    return 200, {"result": "cleared"}


def _faults(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    return 200, {"faults": [f.to_json() for f in sandbox.faults.active()]}


def _clear_faults(sandbox: SmcSandbox, a: list[str], body: Any) -> Reply:
    sandbox.clear_faults()
    return 200, {"result": "cleared"}


_ROWS = ("organizations", "*", "lists", "*", "rows")
_MEMBERS = ("organizations", "*", "lists", "*", "segments", "*", "members")
_MESSAGES = ("organizations", "*", "journeys", "*", "messages")
ADMIN_ROUTES: tuple[tuple[str, tuple[str, ...], AdminRoute], ...] = (
    ("POST", ("reset",), _reset),
    ("POST", ("seed",), _seed_route),
    ("POST", ("service-accounts",), _add_account),
    ("DELETE", ("service-accounts", "*"), _remove_account),
    ("GET", _ROWS, lambda s, a, b: (200, {"rows": s.rows(a[0], a[1])})),
    ("GET", _MEMBERS, lambda s, a, b: (200, {"members": s.segment_members(a[0], a[1], a[2])})),
    ("GET", _MESSAGES, lambda s, a, b: (200, {"messages": s.messages(a[0], a[1])})),
    ("GET", ("requests",), _requests),
    ("DELETE", ("requests",), _clear_requests),
    ("GET", ("faults",), _faults),
    ("POST", ("faults",), _inject),
    ("DELETE", ("faults",), _clear_faults),
    ("GET", ("latency",), lambda s, a, b: (200, {"latency_s": s.latency_s})),
    ("PUT", ("latency",), _set_latency),
    ("GET", ("validation",), lambda s, a, b: (200, {"mode": s.validation})),
    ("PUT", ("validation",), _set_validation),
    ("DELETE", ("organizations", "*", "lists", "*", "fields", "*"), _remove_field),
)
