"""Segment authentication over the raw body bytes: `X-Signature` HMAC or a bearer token."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Literal

from handler.credentials import Credentials
from handler.errors import AuthenticationError
from handler.observability import count

Shape = Literal["single", "array", "batch"]
AuthMethod = Literal["signature", "bearer"]

FIRST_EVENT_ONLY = (
    "X-Signature covers only the first event of this batch (Segment's Webhooks (Actions) destination "
    "signs batches that way), so the other events are not authenticated and the batch is refused. "
    "Fix: add the header `Authorization: Bearer <token>` to the webhook mapping's Headers, and put "
    "the same token into this destination's secret as `bearerToken`."
)
_NOT_WHITESPACE = re.compile(r"[^ \t\n\r]")  # JSON has these four whitespace characters
_decoder = json.JSONDecoder()


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches_any(candidate: str, secrets: tuple[str, ...]) -> bool:
    # Every secret is compared (no early exit) so timing does not tell which one matched.
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(candidate.encode(), secret.encode())
    return found


def _signed(signature: str, data: bytes, secrets: tuple[str, ...]) -> bool:
    return _matches_any(signature, tuple(signature_for(secret, data) for secret in secrets))


def _skip_whitespace(text: str, index: int) -> int:
    found = _NOT_WHITESPACE.search(text, index)
    return found.start() if found else len(text)


def signature_for(secret: str, body: bytes) -> str:
    """Segment's `X-Signature`: lowercase hex HMAC-SHA1 of the exact body bytes."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def first_element(body: bytes) -> bytes | None:
    """The exact bytes of the first element of a top-level JSON array `body`, or None.

    Segment sends `JSON.stringify(array)`, which is "[" + the elements' own `JSON.stringify`
    joined by "," + "]", so these bytes are exactly what it signed for the first event. They
    are sliced out of `body` (never re-serialised: key order, spacing and escapes must stay).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    start = _skip_whitespace(text, 0)
    if not text.startswith("[", start):
        return None
    start = _skip_whitespace(text, start + 1)
    try:
        _, end = _decoder.raw_decode(text, start)
    except (ValueError, RecursionError):  # not JSON (an empty array included), or too deep
        return None
    # Before `start` are only "[" and whitespace (ASCII): it is a byte offset too; the element may
    # hold non-ASCII, so its length in bytes is counted.
    return body[start : start + len(text[start:end].encode("utf-8"))]


def authenticate(headers: Mapping[str, str], body: bytes, creds: Credentials) -> AuthMethod:
    """Return how the request proved itself, or raise `AuthenticationError`.

    Runs on the raw bytes before anything is parsed. `headers` must have lower-case names.
    A presented bearer token must be valid; it is never second-guessed by a signature. A
    signature must cover the whole body, whatever its shape (single event, array or batch).
    """
    token = _bearer(headers)
    if token is not None:
        if creds.bearer_tokens and _matches_any(token, creds.bearer_tokens):
            return "bearer"
        raise AuthenticationError("bearer token is not valid")
    signature = headers.get("x-signature", "").strip().lower()
    if not signature:
        raise AuthenticationError("missing X-Signature or Authorization: Bearer header")
    if _signed(signature, body, creds.shared_secrets):
        return "signature"
    # Segment signs only the first event of a batch: a genuine signature, but events 2..n are
    # unsigned (anyone holding a captured batch could append to it). Never accepted, a one-event
    # batch neither (the mapping is wrong for every batch); the answer says how to fix it, since
    # Segment drops every such batch for good.
    first = first_element(body)
    if first is not None and _signed(signature, first, creds.shared_secrets):
        count("BatchSignedFirstEventOnly")
        raise AuthenticationError(FIRST_EVENT_ONLY)
    raise AuthenticationError("X-Signature does not match the body")
