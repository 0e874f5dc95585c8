"""SMC data model (errors, columns and value coercion, segments, lists with key indexes) and the
rules of the data load / delete endpoints.

`record_index` convention: the 0-based index of the *data* row. When the `fields` query parameter is
absent the body's first row is the header and is not counted, so index 0 is always the first data row
(with `fields` given, that is simply the row's index in the body).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JsonDict = dict[str, Any]
Key = tuple[Any, ...]

DATA_TYPES = ("Text", "LongText", "Numeric", "Long", "Float", "Boolean", "Date", "DateTime")
LIST_TYPES = ("Userlist", "Datalist", "DataSelectionList", "Optionlist", "Devicelist")
SEGMENT_TYPES = ("Static", "Dynamic", "External")
DEFAULT_TEXT_LENGTH = 255  # used when a Text field is declared without a length
_TEXT_TYPES = ("Text", "LongText")
_LONG_RANGE = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"[+-]?\d+")
API_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SmcError(Exception):
    """A request-level failure, answered as HTTP `status` with SMC's `result_code` and `errors[]`."""

    def __init__(self, status: int, result_code: str, error_code: str, *descriptions: str) -> None:
        super().__init__("; ".join(descriptions))
        self.status = status
        self.result_code = result_code
        self.errors = [{"error_code": error_code, "description": d} for d in descriptions]

    def body(self) -> JsonDict:
        return {"result_code": self.result_code, "errors": self.errors}


class RowsRefused(SmcError):
    """All-or-nothing validation: invalid rows refuse the whole request (400) and nothing is applied."""

    def __init__(self, invalid: list[JsonDict]) -> None:
        super().__init__(400, "ValidationFailed", "ERR_VALIDATION", f"{len(invalid)} record(s) are invalid")
        self.invalid = invalid

    def body(self) -> JsonDict:
        failed = len(self.invalid)
        return {**super().body(), "number_of_failed_records": failed, "invalid_records": self.invalid}


class CreationFailed(SmcError):
    """A create request refused as the Swagger's `create_segment_failed_response`: 400 `Failed`."""

    def __init__(self, error_code: str, description: str) -> None:
        super().__init__(400, "Failed", error_code, description)

    def body(self) -> JsonDict:
        return {**super().body(), "message": "Request Failed"}


def not_found(description: str) -> SmcError:
    return SmcError(404, "NotFound", "ERR_NOT_FOUND", description)


def validation_failed(*descriptions: str) -> SmcError:
    return SmcError(400, "ValidationFailed", "ERR_VALIDATION", *descriptions)


@dataclass(frozen=True)
class FieldDef:
    """One list column."""

    name: str
    data_type: str
    length: int | None
    allow_null: bool

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FieldDef:
        """Validate a field spec (`name`, `data_type`, `length`, `allow_null`) as POST .../fields does."""
        name, data_type = spec.get("name"), spec.get("data_type")
        if not isinstance(name, str) or not API_NAME.fullmatch(name):
            raise validation_failed(f"Invalid field name {name!r}")
        if data_type not in DATA_TYPES:
            raise validation_failed(f"Field '{name}' has unknown data_type {data_type!r}")
        length = spec.get("length", DEFAULT_TEXT_LENGTH if data_type == "Text" else None)
        if length is not None and (type(length) is not int or length < 0):
            raise validation_failed(f"Field '{name}' has an invalid length {length!r}")
        allow_null = spec.get("allow_null", True)
        if not isinstance(allow_null, bool):
            raise validation_failed(f"Field '{name}' has a non-boolean allow_null")
        return cls(name, str(data_type), length, allow_null)

    def to_json(self) -> JsonDict:
        return {
            "name": self.name,
            "data_type": self.data_type,
            "length": self.length,
            "allow_null": self.allow_null,
            "description": None,
            "content": "Free",
        }


class InvalidValue(Exception):
    """A value a column rejects; becomes one `invalid_records[]` entry."""

    def __init__(self, field_name: str, code: str, message: str) -> None:
        super().__init__(message)
        self.field_name, self.code, self.message = field_name, code, message


def coerce_value(f: FieldDef, value: Any) -> Any:
    """Convert one JSON value to the column's type (stored form); raise InvalidValue as SMC would."""
    kind = f.data_type
    if type(value) is str and kind in _TEXT_TYPES:  # the common case first: loads are mostly text
        return _within_length(f, value)
    # An empty string is NULL for non-text columns: that is how SMC's CSV-style imports treat it.
    if value is None or (value == "" and kind not in _TEXT_TYPES):
        if not f.allow_null:
            raise InvalidValue(f.name, "InvalidType", f"Field '{f.name}' does not allow null values")
        return None
    if kind in _TEXT_TYPES:
        if not isinstance(value, dict | list):
            return _within_length(f, json.dumps(value))  # numbers and booleans as their JSON text
    elif kind == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    elif kind in ("Date", "DateTime"):
        if isinstance(value, str) and _is_iso_8601(value.strip()):
            return value.strip()
    else:
        number = _to_number(value, integral=kind == "Long")
        if number is not None:
            return number
    message = f"Value {value!r:.60} is not a valid {kind} for field '{f.name}'"
    raise InvalidValue(f.name, "InvalidType", message)


def utf16_length(text: str) -> int:
    """A string's length as SMC counts it: .NET strings are UTF-16, so characters outside the
    Basic Multilingual Plane (most emoji) count twice."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le", "surrogatepass")) // 2


def _within_length(f: FieldDef, text: str) -> str:
    if f.length and len(text) * 2 > f.length and utf16_length(text) > f.length:  # 0 / None: unlimited
        message = f"Length of string ({utf16_length(text)}) exceeds maximum field length ({f.length})"
        raise InvalidValue(f.name, "MaxStringLengthExceeded", message)
    return text


def _to_number(value: Any, integral: bool) -> int | float | None:
    if isinstance(value, bool):  # JSON true/false is not a number
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text) if _INTEGER.fullmatch(text) else float(text)
        except ValueError:
            return None
    if isinstance(value, float):
        if not math.isfinite(value) or (integral and not value.is_integer()):
            return None
        value = int(value) if integral else value
    if isinstance(value, int) and integral and not _LONG_RANGE[0] <= value <= _LONG_RANGE[1]:
        return None
    return value if isinstance(value, int | float) else None


def _is_iso_8601(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


@dataclass
class Segment:
    """A segment of a list; only Static ones hold members (record ids)."""

    api_name: str
    name: str
    segment_type: str
    description: str | None = None
    members: set[int] = field(default_factory=set)

    def item(self) -> JsonDict:
        """The segment as GET …/segments lists it."""
        return {"api_name": self.api_name, "name": self.name, "segment_type": self.segment_type}

    def details(self) -> JsonDict:
        """`SegmentDetailsModel`, as GET …/segments/{segment} answers it."""
        return {
            "type": self.segment_type,
            "api_name": self.api_name,
            "name": self.name,
            "description": self.description,
        }


class SmcList:
    """A list's columns, rows (record id → column → value) and key indexes kept up to date."""

    def __init__(self, list_id: int, api_name: str, name: str, list_type: str) -> None:
        self.id, self.api_name, self.name, self.type = list_id, api_name, name, list_type
        self.columns: dict[str, FieldDef] = {}  # upper-cased name → field: SMC names are case-insensitive
        self.rows: dict[int, JsonDict] = {}
        self.segments: dict[str, Segment] = {}  # lower-cased api name → segment: 'VIP' is 'vip'
        # key field names → key values → record ids; built on first use of a key combination so
        # upserts and deletes cost O(rows in the request), not O(rows stored).
        self._indexes: dict[tuple[str, ...], dict[Key, set[int]]] = {}
        self._next_id = 1
        self._blank_row: JsonDict = {}  # every column NULL: the start of an inserted row

    def column(self, name: str) -> FieldDef | None:
        return self.columns.get(name.strip().upper())

    def add_field(self, f: FieldDef) -> None:
        self.columns[f.name.upper()] = f
        self._blank_row[f.name] = None
        for row in self.rows.values():
            row[f.name] = None

    def remove_field(self, name: str) -> None:
        """Drop a column and its values (an admin deleting it, for tests of a missing column)."""
        f = self.columns.pop(name.strip().upper(), None)
        if f is None:
            raise not_found(f"Field '{name}' not found on list '{self.api_name}'")
        self._blank_row.pop(f.name, None)
        for row in self.rows.values():
            row.pop(f.name, None)
        self._indexes = {keys: index for keys, index in self._indexes.items() if f.name not in keys}

    def find(self, keys: tuple[str, ...], key: Key) -> set[int]:
        """Record ids whose `keys` columns equal `key` (a live set: copy before mutating the list)."""
        index = self._indexes.get(keys)
        if index is None:
            index = self._indexes[keys] = {}
            for rid, row in self.rows.items():
                index.setdefault(tuple(row[k] for k in keys), set()).add(rid)
        return index.get(key, set())

    def insert(self, values: JsonDict) -> int:
        rid, self._next_id = self._next_id, self._next_id + 1
        row = {**self._blank_row, **values}
        self.rows[rid] = row
        for keys, index in self._indexes.items():
            index.setdefault(tuple(row[k] for k in keys), set()).add(rid)
        return rid

    def update(self, rid: int, values: JsonDict) -> None:
        row = self.rows[rid]
        before = {keys: tuple(row[k] for k in keys) for keys in self._indexes}
        row.update(values)
        for keys, index in self._indexes.items():
            after = tuple(row[k] for k in keys)
            if after != before[keys]:
                _unindex(index, before[keys], rid)
                index.setdefault(after, set()).add(rid)

    def delete(self, rid: int) -> None:
        row = self.rows.pop(rid)
        for keys, index in self._indexes.items():
            _unindex(index, tuple(row[k] for k in keys), rid)
        for segment in self.segments.values():
            segment.members.discard(rid)


def _unindex(index: dict[Key, set[int]], key: Key, rid: int) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(rid)
        if not ids:
            del index[key]


# -- the data load / delete rules (callers hold the state lock) --------------------------------
@dataclass(frozen=True)
class _Batch:
    fields: tuple[FieldDef, ...]  # every column of a row, in row order
    keys: tuple[str, ...]  # canonical names of the key fields
    rows: list[Any]  # data rows (the header row, if any, removed)


_Valid = tuple[int, Key, JsonDict]  # (record_index, key values, column → value)


def _query_value(query: Mapping[str, str], name: str) -> str | None:
    # SMC runs on ASP.NET, whose query parameter names are case-insensitive (keyFields / keyfields).
    wanted = name.lower()
    return next((value for key, value in query.items() if key.lower() == wanted), None)


def page_bounds(query: Mapping[str, str], default_take: int) -> tuple[int, int]:
    """`skip` and `take` of a collection GET (`skip` 0 and `take` `default_take` when absent)."""
    bounds = []
    for name, default in (("skip", 0), ("take", default_take)):
        value = _query_value(query, name)
        try:
            number = default if value in (None, "") else int(value)
        except ValueError:
            number = -1
        if number < 0:
            raise validation_failed(f"The value '{value}' is not valid for {name}")
        bounds.append(number)
    return bounds[0], bounds[1]


def _option(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    """The value of an enum option, case-insensitive; the first allowed value is the default."""
    value = _query_value(query, name)
    if not value:
        return allowed[0]
    for choice in allowed:
        if choice.lower() == value.strip().lower():
            return choice
    raise validation_failed(f"Invalid value '{value}' for '{name}'; expected one of {', '.join(allowed)}")


def _split(names: str) -> list[str]:
    return [name.strip() for name in names.split(",") if name.strip()]


def _parse_batch(lst: SmcList, query: Mapping[str, str], body: Any) -> _Batch:
    if not isinstance(body, list) or not all(isinstance(row, list) for row in body):
        raise validation_failed("The body must be a JSON array of rows, each row an array of values")
    key_names = _split(_query_value(query, "keyFields") or "")
    if not key_names:
        raise validation_failed("The query parameter 'keyFields' is required")
    fields_param = _query_value(query, "fields")
    rows: list[Any] = body
    if fields_param:
        names = _split(fields_param)
    elif body and all(isinstance(name, str) for name in body[0]):
        names, rows = body[0], body[1:]
    else:
        raise validation_failed("Without the 'fields' parameter the first row must hold the field names")
    columns = [lst.column(name) for name in names]
    unknown = [name for name, column in zip(names, columns, strict=True) if column is None]
    if unknown:
        raise validation_failed(*(f"Field '{n}' does not exist on list '{lst.api_name}'" for n in unknown))
    fields = tuple(c for c in columns if c is not None)
    if len({f.name for f in fields}) != len(fields):
        raise validation_failed("A field is listed more than once in 'fields'")
    keys = [lst.column(name) for name in key_names]
    for name, key in zip(key_names, keys, strict=True):
        if key is None or key not in fields:
            raise validation_failed(f"Key field '{name}' is not one of the fields of the request")
    return _Batch(fields, tuple(k.name for k in keys if k is not None), rows)


def _invalid(index: int, field_name: str | None, code: str, message: str) -> JsonDict:
    return {"record_index": index, "field_name": field_name, "message": message, "validation_code": code}


def _validate(batch: _Batch) -> tuple[list[_Valid], list[JsonDict]]:
    """Split the rows into valid ones (coerced) and `invalid_records[]` entries, one per bad row."""
    valid: list[_Valid] = []
    invalid: list[JsonDict] = []
    width = len(batch.fields)
    for index, row in enumerate(batch.rows):
        if len(row) != width:
            message = "Record contains incorrect number of fields"
            invalid.append(_invalid(index, None, "InvalidFieldCount", message))
            continue
        try:
            values = {f.name: coerce_value(f, value) for f, value in zip(batch.fields, row, strict=True)}
        except InvalidValue as exc:
            invalid.append(_invalid(index, exc.field_name, exc.code, exc.message))
            continue
        key = tuple(values[k] for k in batch.keys)
        if any(part is None for part in key):
            invalid.append(_invalid(index, None, "InvalidType", "Key field values must not be null"))
            continue
        valid.append((index, key, values))
    return valid, invalid


def _dedupe(valid: list[_Valid], first_wins: bool) -> tuple[dict[Key, tuple[int, JsonDict]], int]:
    """One entry per key (first or last occurrence wins) and the number of duplicates dropped."""
    unique: dict[Key, tuple[int, JsonDict]] = {}
    for index, key, values in valid:
        if not (first_wins and key in unique):
            unique[key] = (index, values)
    return unique, len(valid) - len(unique)


def result_code_for(total: int, failed: int) -> str:
    """`Succeeded`, `PartiallySucceeded` or `Failed` for `failed` of `total` rows or items."""
    if failed == 0:
        return "Succeeded"
    return "Failed" if failed >= total else "PartiallySucceeded"


def load_batch(
    lst: SmcList, segment: Segment | None, query: Mapping[str, str], body: Any, strict: bool = False
) -> JsonDict:
    """Upsert rows (into `segment` too, if given). `strict`: any invalid row refuses the whole
    request with a 400 and nothing is applied; otherwise valid rows load and invalid ones are named."""
    batch = _parse_batch(lst, query, body)
    _option(query, "mode", ("Sync", "Stream"))  # validated only: both modes answer synchronously here
    dedup = _option(query, "deduplication", ("ImportLastMatch", "ImportFirstMatch"))
    import_option = _option(query, "data_import_option", ("InsertAndUpdate", "OnlyInsert", "OnlyUpdate"))
    valid, invalid = _validate(batch)
    unique, duplicates = _dedupe(valid, dedup == "ImportFirstMatch")
    given = {f.name for f in batch.fields}
    missing = [f.name for f in lst.columns.values() if not f.allow_null and f.name not in given]
    planned: list[tuple[Key, JsonDict, set[int] | None]] = []  # None: insert
    not_found_count = 0
    for key, (index, values) in unique.items():
        ids = lst.find(batch.keys, key)
        if ids:
            planned.append((key, values, set(ids)))  # a copy: updates re-index the live set
        elif import_option == "OnlyUpdate":
            not_found_count += 1
        elif missing:  # a new record would leave a NOT NULL column empty
            message = f"Field '{missing[0]}' does not allow null values"
            invalid.append(_invalid(index, missing[0], "InvalidType", message))
        else:
            planned.append((key, values, None))
    invalid.sort(key=lambda record: int(record["record_index"]))
    if strict and invalid:
        raise RowsRefused(invalid)
    inserted = updated = 0
    for _key, values, existing in planned:
        if existing is None:
            existing = {lst.insert(values)}
            inserted += 1
        elif import_option != "OnlyInsert":
            for rid in existing:
                lst.update(rid, values)
            # SMC's counters count rows of the request (the Swagger's examples add up to the rows
            # sent), not records: a key matching two records is one updated row.
            updated += 1
        if segment is not None:
            segment.members.update(existing)
    return {
        "result_code": result_code_for(len(batch.rows), len(invalid)),
        "number_of_inserted_records": inserted,
        "number_of_updated_records": updated,
        "number_of_failed_records": len(invalid),
        "number_of_duplicate_records": duplicates,
        "number_of_records_not_found": not_found_count,
        "number_of_deleted_records": 0,
        "invalid_records": invalid,
        "errors": None,
    }


def delete_batch(
    lst: SmcList, segment: Segment | None, query: Mapping[str, str], body: Any, strict: bool = False
) -> JsonDict:
    """Delete the records matching the rows' keys (from `segment` only, if given)."""
    batch = _parse_batch(lst, query, body)
    _option(query, "mode", ("Sync", "Stream"))
    valid, invalid = _validate(batch)
    if strict and invalid:
        raise RowsRefused(invalid)
    unique, duplicates = _dedupe(valid, first_wins=True)
    deleted = not_found_count = 0
    for key in unique:
        ids = lst.find(batch.keys, key)
        # Every matching record goes (deleting by USER_ID removes all of that user's rows); for a
        # segment only the memberships go and the records stay.
        targets = ids & segment.members if segment is not None else set(ids)
        if not targets:
            not_found_count += 1
            continue
        for rid in targets:
            if segment is not None:
                segment.members.discard(rid)
            else:
                lst.delete(rid)
        deleted += 1  # rows of the request, as every counter (see load_batch)
    return {
        "result_code": result_code_for(len(batch.rows), len(invalid)),
        "number_of_deleted_records": deleted,
        "number_of_duplicate_records": duplicates,
        "number_of_failed_records": len(invalid),
        "number_of_records_not_found": not_found_count,
        "invalid_records": invalid,
        "errors": None,
    }
