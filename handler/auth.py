"""Segment authentication over the raw body bytes: `X-Signature` HMAC or a bearer token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Literal

from handler.credentials import Credentials
from handler.errors import AuthenticationError

Shape = Literal["single", "array", "batch"]
AuthMethod = Literal["signature", "bearer"]


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


def signature_for(secret: str, body: bytes) -> str:
    """Segment's `X-Signature`: lowercase hex HMAC-SHA1 of the exact body bytes."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def authenticate(headers: Mapping[str, str], body: bytes, creds: Credentials) -> AuthMethod:
    """Return how the request proved itself, or raise `AuthenticationError`.

    Runs on the raw bytes before anything is parsed. `headers` must have lower-case names.
    A presented bearer token must be valid; it is never second-guessed by a signature.
    """
    token = _bearer(headers)
    if token is not None:
        if creds.bearer_tokens and _matches_any(token, creds.bearer_tokens):
            return "bearer"
        raise AuthenticationError("bearer token is not valid")
    signature = headers.get("x-signature", "").strip().lower()
    if not signature:
        raise AuthenticationError("missing X-Signature or Authorization: Bearer header")
    expected = tuple(signature_for(secret, body) for secret in creds.shared_secrets)
    if _matches_any(signature, expected):
        return "signature"
    raise AuthenticationError("X-Signature does not match the body")


def check_shape(method: AuthMethod, shape: Shape) -> None:
    """Refuse a signed array or batch: Segment signs only its first element, so a captured
    batch could carry forged events appended after it. Batches need the bearer token."""
    if method == "signature" and shape != "single":
        raise AuthenticationError("a batch must be authenticated with Authorization: Bearer")
