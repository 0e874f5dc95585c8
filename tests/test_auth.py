"""Authentication: signature over raw bytes for single events, bearer for any shape."""

from __future__ import annotations

import pytest

from handler.auth import authenticate, check_shape, signature_for
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


@pytest.mark.parametrize("shape", ["array", "batch"])
def test_signed_batch_is_refused_because_segment_signs_only_its_first_event(shape):
    with pytest.raises(AuthenticationError, match="Bearer"):
        check_shape("signature", shape)
    check_shape("bearer", shape)


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
