"""Authentication: a signature over the whole raw body, or a bearer token, for any shape."""

from __future__ import annotations

import json

import pytest

from handler.auth import FIRST_EVENT_ONLY, authenticate, first_element, signature_for
from handler.credentials import Credentials, parse_secret
from handler.errors import AuthenticationError, ConfigurationError
from tests import support

CREDS = Credentials(
    api_key="k",
    api_secret="s",
    shared_secrets=(support.SHARED_SECRET, support.PREVIOUS_SHARED_SECRET),
    bearer_tokens=(support.BEARER_TOKEN, support.PREVIOUS_BEARER_TOKEN),
)
BODY = b'{"type":"track","event":"A","userId":"u1"}'


def test_signature_is_accepted_when_it_is_the_hmac_of_the_exact_body():
    assert (
        authenticate({"x-signature": signature_for(support.SHARED_SECRET, BODY)}, BODY, CREDS) == "signature"
    )


def test_signature_made_with_the_previous_secret_is_accepted_during_rotation():
    sig = signature_for(support.PREVIOUS_SHARED_SECRET, BODY)
    assert authenticate({"x-signature": sig.upper()}, BODY, CREDS) == "signature"


def test_signature_is_refused_when_the_body_was_reformatted():
    sig = signature_for(support.SHARED_SECRET, BODY)
    with pytest.raises(AuthenticationError, match="does not match"):
        authenticate({"x-signature": sig}, BODY.replace(b":", b": "), CREDS)


def test_request_is_refused_when_no_credential_is_presented():
    with pytest.raises(AuthenticationError, match="missing"):
        authenticate({}, BODY, CREDS)


@pytest.mark.parametrize("token", [support.BEARER_TOKEN, support.PREVIOUS_BEARER_TOKEN])
def test_bearer_token_is_accepted_for_current_and_previous_token(token):
    assert authenticate({"authorization": f"Bearer {token}"}, BODY, CREDS) == "bearer"


def test_bearer_scheme_is_case_insensitive():
    assert authenticate({"authorization": f"bearer {support.BEARER_TOKEN}"}, BODY, CREDS) == "bearer"


def test_wrong_bearer_token_is_refused_even_with_a_valid_signature():
    headers = {"authorization": "Bearer nope", "x-signature": signature_for(support.SHARED_SECRET, BODY)}
    with pytest.raises(AuthenticationError, match="bearer"):
        authenticate(headers, BODY, CREDS)


def test_bearer_is_refused_when_the_secret_holds_no_token():
    creds = Credentials("k", "s", (support.SHARED_SECRET,), ())
    with pytest.raises(AuthenticationError):
        authenticate({"authorization": "Bearer "}, BODY, creds)
    with pytest.raises(AuthenticationError):
        authenticate({"authorization": f"Bearer {support.BEARER_TOKEN}"}, BODY, creds)


def stringify(value: object) -> bytes:
    """What JavaScript's `JSON.stringify` sends: no spaces, non-ASCII kept as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


EVENTS = [
    support.track(properties={"name": "Zoë ☕ 🚀", "quote": 'say "hi"\n'}),
    support.identify(),
    support.track(),
]


def signed_by(secret: str, data: bytes) -> dict[str, str]:
    return {"x-signature": signature_for(secret, data)}


@pytest.mark.parametrize(
    "body",
    [
        stringify(EVENTS),
        b" \r\n\t[ \n" + stringify(EVENTS[0]) + b" ,\n" + stringify(EVENTS[1]) + b"\n]\n ",
        b"[" + stringify(EVENTS[0]) + b"]",
        b"[" + stringify(EVENTS[0]) + b",{not json",  # the rest is never parsed
    ],
    ids=["stringified", "whitespace-around", "one-element", "malformed-tail"],
)
def test_first_element_is_the_exact_bytes_segment_signed_when_the_body_is_an_array(body):
    assert first_element(body) == stringify(EVENTS[0])


@pytest.mark.parametrize(
    "body",
    [
        stringify(EVENTS[0]),
        stringify({"batch": EVENTS}),
        b"[]",
        b" [ ] ",
        b"[{",
        b'"[1]"',
        b"",
        b"[\xff]",
        b"[" * 100_000,
    ],
    ids=[
        "single",
        "batch-envelope",
        "empty",
        "empty-spaced",
        "truncated",
        "string",
        "nothing",
        "not-utf8",
        "deep",
    ],
)
def test_first_element_is_none_when_the_body_is_not_an_array_with_a_first_element(body):
    assert first_element(body) is None


@pytest.mark.parametrize("secret", [support.SHARED_SECRET, support.PREVIOUS_SHARED_SECRET])
def test_batch_signed_over_its_first_event_only_is_refused_with_the_fix_when_no_bearer_is_sent(secret):
    body = stringify(EVENTS)
    with pytest.raises(AuthenticationError) as refused:
        authenticate(signed_by(secret, stringify(EVENTS[0])), body, CREDS)
    assert refused.value.status == 401 and refused.value.message == FIRST_EVENT_ONLY
    assert "Authorization: Bearer <token>" in FIRST_EVENT_ONLY and "`bearerToken`" in FIRST_EVENT_ONLY
    assert not any(value in FIRST_EVENT_ONLY for value in (*CREDS.shared_secrets, *CREDS.bearer_tokens))


def test_first_event_signature_is_recognised_when_whitespace_surrounds_the_array():
    body = b"\n [\n  " + stringify(EVENTS[0]) + b",\n  " + stringify(EVENTS[1]) + b"\n]\n"
    with pytest.raises(AuthenticationError, match="covers only the first event"):
        authenticate(signed_by(support.SHARED_SECRET, stringify(EVENTS[0])), body, CREDS)


def test_one_event_batch_signed_over_its_event_is_refused_with_the_fix_when_no_bearer_is_sent():
    body = b"[" + stringify(EVENTS[0]) + b"]"
    with pytest.raises(AuthenticationError, match="covers only the first event"):
        authenticate(signed_by(support.SHARED_SECRET, stringify(EVENTS[0])), body, CREDS)


def test_forged_event_appended_to_a_signed_event_is_refused_when_sent_as_an_array():
    captured = stringify(EVENTS[0])  # a genuine single event and its genuine signature
    forged = b"[" + captured + b"," + stringify(support.identify(userId="attacker")) + b"]"
    with pytest.raises(AuthenticationError, match="covers only the first event"):
        authenticate(signed_by(support.SHARED_SECRET, captured), forged, CREDS)


def test_forged_event_appended_to_a_fully_signed_array_is_refused_when_the_signature_no_longer_matches():
    captured = stringify(EVENTS[:2])
    forged = captured[:-1] + b"," + stringify(support.identify(userId="attacker")) + b"]"
    with pytest.raises(AuthenticationError, match="does not match the body"):
        authenticate(signed_by(support.SHARED_SECRET, captured), forged, CREDS)


@pytest.mark.parametrize("secret", [support.SHARED_SECRET, support.PREVIOUS_SHARED_SECRET])
@pytest.mark.parametrize("payload", [EVENTS, {"batch": EVENTS, "context": {}}], ids=["array", "batch"])
def test_signature_over_the_whole_body_is_accepted_when_the_body_is_an_array_or_a_batch(payload, secret):
    body = stringify(payload)
    assert authenticate(signed_by(secret, body), body, CREDS) == "signature"


@pytest.mark.parametrize(
    "body", [b"[]", b"[{", b"\xff\xfe", b"[" * 100_000], ids=["empty-array", "malformed", "not-utf8", "deep"]
)
def test_wrong_signature_is_refused_cleanly_when_the_body_is_malformed(body):
    with pytest.raises(AuthenticationError, match="X-Signature does not match the body"):
        authenticate(signed_by(support.SHARED_SECRET, b"something else"), body, CREDS)


def test_batch_envelope_is_refused_as_a_mismatch_when_only_its_first_event_is_signed():
    # Segment signs arrays this way; a {"batch": [...]} signature must cover the whole body.
    body = stringify({"batch": EVENTS})
    with pytest.raises(AuthenticationError, match="does not match the body"):
        authenticate(signed_by(support.SHARED_SECRET, stringify(EVENTS[0])), body, CREDS)


def test_secret_parsing_names_the_missing_field_without_its_value():
    with pytest.raises(ConfigurationError, match="apiSecret"):
        parse_secret({"apiKey": "k", "sharedSecret": "x"})
    with pytest.raises(ConfigurationError, match="bearerToken"):
        parse_secret({"apiKey": "k", "apiSecret": "s", "sharedSecret": "x", "bearerToken": 5})


def test_credentials_repr_hides_every_value():
    creds = parse_secret(
        {
            "apiKey": "k1",
            "apiSecret": support.SMC_SECRET,
            "sharedSecret": support.SHARED_SECRET,
            "bearerToken": support.BEARER_TOKEN,
            "sharedSecretPrevious": support.PREVIOUS_SHARED_SECRET,
        }
    )
    text = repr(creds)
    assert (
        support.SMC_SECRET not in text
        and support.SHARED_SECRET not in text
        and support.BEARER_TOKEN not in text
    )
    assert creds.shared_secrets == (support.SHARED_SECRET, support.PREVIOUS_SHARED_SECRET)
    assert creds.smc_api_key_header == f"k1:{support.SMC_SECRET}"
