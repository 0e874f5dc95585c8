"""The SMC events list the destination writes: one definition used by mappers, docs and tooling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from handler import utf16
from handler.observability import count, logger

DataType = Literal["Text", "LongText", "Numeric", "Long", "Float", "Boolean", "Date", "DateTime"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an SMC list, as `GET /lists/{list}/fields` describes it."""

    name: str
    data_type: DataType
    length: int  # 0 = no limit (LongText, DateTime)
    allow_null: bool = True

    def fit(self, value: str) -> str:
        """A descriptive value cut to the column's length (SMC would refuse the whole row), counted
        as `ValuesTruncated`. Never for identifiers: a cut id could merge two people."""
        if not self.length or utf16.fits(value, self.length):
            return value
        count("ValuesTruncated")
        logger.debug("value truncated", extra={"column": self.name, "units": utf16.length(value)})
        return utf16.truncate(value, self.length)

    def as_field(self) -> dict[str, object]:
        """The SMC field model (`POST /lists/{list}/fields`)."""
        return {
            "name": self.name,
            "data_type": self.data_type,
            "length": self.length,
            "allow_null": self.allow_null,
        }


MESSAGE_ID = "MESSAGE_ID"
USER_ID = "USER_ID"
ANONYMOUS_ID = "ANONYMOUS_ID"

EVENT_NAME = Column("EVENT_NAME", "Text", 255)
EVENTS_LIST_COLUMNS: tuple[Column, ...] = (
    Column(MESSAGE_ID, "Text", 100, allow_null=False),
    Column("EVENT_TYPE", "Text", 20, allow_null=False),
    EVENT_NAME,
    Column(USER_ID, "Text", 255),
    Column(ANONYMOUS_ID, "Text", 255),
    Column("PREVIOUS_ID", "Text", 255),
    Column("EVENT_TIMESTAMP", "DateTime", 0),
    Column("RECEIVED_AT", "DateTime", 0),
    Column("PROPERTIES", "LongText", 0),
    Column("CONTEXT", "LongText", 0),
)
EVENTS_LIST_FIELDS: tuple[str, ...] = tuple(column.name for column in EVENTS_LIST_COLUMNS)
EVENTS_LIST_KEY: tuple[str, ...] = (MESSAGE_ID,)
