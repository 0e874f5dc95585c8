"""Request reading and parsing: shapes, encodings, limits."""

from __future__ import annotations

import json

import pytest

from handler.errors import RequestError
from handler.request import MAX_EVENTS_PER_REQUEST, check_envelope, parse_payload, read_request
from tests import support


def test_base64_body_is_decoded_to_the_exact_bytes():
    event = support.api_event({"type": "track"}, base64_body=True)
    assert read_request(event).body == b'{"type":"track"}'


def test_header_names_are_lower_cased_for_sam_local_events():
    event = support.api_event({"type": "track"}, signature=False, headers={})
    event["headers"] = {"Content-Type": "application/json", "X-Signature": "abc"}
    request = read_request(event)
    assert request.headers["x-signature"] == "abc" and request.headers["content-type"] == "application/json"


def test_invalid_base64_is_a_400():
    event = support.api_event({"a": 1})
    event["isBase64Encoded"] = True
    event["body"] = "***"
    with pytest.raises(RequestError) as err:
        read_request(event)
    assert err.value.status == 400


@pytest.mark.parametrize(
    "content_type,status",
    [
        ("text/plain", 415),
        ("", 415),
        ("application/json; charset=utf-8", None),
        ("application/vnd.x+json", None),
    ],
)
def test_content_type_must_be_json(content_type, status):
    event = support.api_event({"a": 1}, headers={"content-type": content_type})
    request = read_request(event)
    if status is None:
        check_envelope(request)
    else:
        with pytest.raises(RequestError) as err:
            check_envelope(request)
        assert err.value.status == status


def test_non_post_is_a_405():
    with pytest.raises(RequestError) as err:
        check_envelope(read_request(support.api_event({"a": 1}, method="GET")))
    assert err.value.status == 405


def test_oversized_body_is_a_413():
    event = support.api_event(body="[" + ",".join(['{"a":"' + "x" * 1000 + '"}'] * 5200) + "]")
    with pytest.raises(RequestError) as err:
        check_envelope(read_request(event))
    assert err.value.status == 413


@pytest.mark.parametrize(
    "payload,shape,count",
    [
        ({"type": "track"}, "single", 1),
        ([{"type": "track"}, {"type": "page"}], "array", 2),
        ({"batch": [{"type": "track"}], "context": {"library": {}}}, "batch", 1),
    ],
)
def test_payload_shapes_are_recognised(payload, shape, count):
    parsed = parse_payload(json.dumps(payload).encode())
    assert parsed.shape == shape and len(parsed.events) == count


@pytest.mark.parametrize(
    "body,code",
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "invalid_encoding"),
        (b"42", "invalid_payload"),
        (b'"text"', "invalid_payload"),
        (b"[]", "empty_batch"),
        (b'{"batch": {}}', "invalid_batch"),
        (b"[" * 100 + b"]" * 100, "too_deep"),
        (b"[" * 100000 + b"]" * 100000, "too_deep"),
    ],
)
def test_bad_bodies_are_named_400s(body, code):
    with pytest.raises(RequestError) as err:
        parse_payload(body)
    assert err.value.status == 400 and err.value.code == code


def test_more_than_4000_events_is_a_413():
    body = json.dumps([{"type": "track"}] * (MAX_EVENTS_PER_REQUEST + 1)).encode()
    with pytest.raises(RequestError) as err:
        parse_payload(body)
    assert err.value.status == 413


def test_single_event_over_32_kb_is_a_413():
    body = json.dumps({"type": "track", "properties": {"x": "y" * 33000}}).encode()
    with pytest.raises(RequestError) as err:
        parse_payload(body)
    assert err.value.status == 413 and err.value.code == "event_too_large"
