"""Fault injection: SMC, Secrets Manager, DynamoDB and Lambda itself fail; nothing is lost or doubled.

Every case drives the same realistic mixed workload (`tests/segment_sim.py`) through the real
handler, over real HTTP to the SMC sandbox and the AWS emulator, with Segment's retry rules, then
`verify` checks every event: in SMC exactly once, or refused by name; no MESSAGE_ID twice; static
segment membership as the last change intended; deleted users gone; nothing re-sent to SMC after
Segment got its 200. The tallies go to tests/.reliability.json for docs/reliability.md.

RESPONSE_DEADLINE_MS is 1000 here (700 ms for SMC) so time-outs cost little.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from sandbox import Fault
from sandbox.state import EVENTS_FIELDS
from tests import support
from tests.segment_sim import (
    SegmentSim,
    SimRun,
    SmcTap,
    Tally,
    Workload,
    mixed_workload,
    seed_rows,
    verify,
    write_figures,
)
from tests.support import api_event, invoke

TALLIES: list[Tally] = []
RETRYABLE = {"429", "500", "502", "503", "504", "timeout", "crashed", "lost"}


@pytest.fixture(scope="module", autouse=True)
def _figures() -> Iterator[None]:
    yield
    if TALLIES:
        write_figures("faults", {t.case: dataclasses.asdict(t) for t in TALLIES})


@pytest.fixture
def fstack(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stack with a short response deadline and Powertools' shared secret providers forgotten
    (so a test's endpoint variables reach the boto3 client built next)."""
    from aws_lambda_powertools.utilities.parameters import base

    base.DEFAULT_PROVIDERS.clear()
    monkeypatch.setenv("RESPONSE_DEADLINE_MS", "1000")
    stack.set_env()
    support.narrow_event_name(stack.sandbox)  # the workload's rows SMC refuses (segment_sim)
    yield stack
    base.DEFAULT_PROVIDERS.clear()


def run_case(
    name: str,
    stack: Any,
    *,
    workload: Workload | None = None,
    hook: Callable[[int, int], None] | None = None,
    replay_memory: bool = True,
    settle_s: float = 0.0,
    **sim: Any,
) -> tuple[Tally, SimRun]:
    workload = workload or mixed_workload()
    seed_rows(workload)
    stack.sandbox.clear_requests_log()
    started = time.monotonic()
    with SmcTap(stack.sandbox) as tap:
        run = SegmentSim(before_attempt=hook, **sim).run(workload.deliveries)
        stack.sandbox.clear_faults()
        time.sleep(settle_s)  # writes SMC applies after the handler gave up on them
        tally = verify(name, stack, workload, run, tap, replay_memory=replay_memory, started=started)
    TALLIES.append(tally)
    return tally, run


def per_delivery(
    stack: Any,
    make: Callable[[], Fault | None],
    heal_at: int | None = 2,
    only: set[int] | None = None,
) -> Callable[..., None]:
    """Break SMC at each request's first attempt (or only requests `only`); heal it before attempt
    `heal_at` (None: the fault expires by its own `times`)."""

    def hook(index: int, attempt: int) -> None:
        if attempt == 1:
            stack.sandbox.clear_faults()
            fault = make()
            if fault is not None and (only is None or index in only):
                stack.sandbox.inject(fault)
        elif attempt == heal_at:
            stack.sandbox.clear_faults()

    return hook


# The requests slow cases break: a signed single event, the membership change that a later
# request reverses, the array that reverses it, and the `{"batch": [...]}` with a deletion.
SOME = {1, 5, 6, 7}


def faulted_calls(stack: Any) -> int:
    return sum(1 for r in stack.sandbox.requests_log if r.fault)


def retried(run: SimRun) -> int:
    return sum(n for status, n in run.statuses().items() if status in RETRYABLE)


# -- SMC faults --------------------------------------------------------------------------------------
def test_healthy_baseline_with_partially_succeeded_rows(fstack):
    """No fault: proves the accounting (SMC refuses two rows: PartiallySucceeded, named)."""
    tally, run = run_case("healthy (PartiallySucceeded rows)", fstack)
    assert retried(run) == 0 and tally.rejected_named == 3 and tally.resent_rows == 0
    assert any("MaxStringLengthExceeded" in reason for reason in run.reasons.values())


@pytest.mark.parametrize(
    ("status", "times", "heal_at"),
    [(500, -1, 2), (502, 2, None), (503, -1, 3), (504, -1, 2)],
    ids=["500-until-healed", "502-twice-absorbed", "503-two-attempts", "504-until-healed"],
)
def test_smc_5xx(fstack, status, times, heal_at):
    make = lambda: Fault(status=status, times=times, path_contains="/data")  # noqa: E731
    only = SOME if heal_at == 3 else None
    _tally, run = run_case(f"SMC {status}", fstack, hook=per_delivery(fstack, make, heal_at, only))
    assert faulted_calls(fstack) >= len(only or range(9))
    if heal_at == 3:
        assert run.statuses()["503"] == 2 * len(SOME), run.statuses()
    elif times == -1:
        assert run.statuses()["503"] >= 9, run.statuses()  # every request but the replay retried
    else:
        assert retried(run) == 0  # the handler's own retries absorbed it


@pytest.mark.parametrize("retry_after", ["1", None], ids=["with-retry-after", "without-retry-after"])
def test_smc_429(fstack, retry_after):
    make = lambda: Fault(status=429, retry_after=retry_after, times=-1, path_contains="/data")  # noqa: E731
    label = f"SMC 429 {'with' if retry_after else 'without'} Retry-After"
    _tally, run = run_case(label, fstack, hook=per_delivery(fstack, make))
    throttled = [a for a in run.attempts if a.status == 429]
    assert len(throttled) >= 9 and all(a.retry_after for a in throttled)
    if retry_after:
        assert {a.retry_after for a in throttled} == {retry_after}


def test_smc_401_until_the_rotated_secret_is_stored(fstack, monkeypatch):
    """SMC revokes the key first; the new key reaches Secrets Manager two attempts later."""
    monkeypatch.setattr("handler.credentials._MIN_REFRESH_INTERVAL_S", 0.2)  # Segment waits longer
    fstack.sandbox.add_service_account("svc-key-rotated", "svc-secret-rotated")
    rotated = {"done": False}

    def hook(index: int, attempt: int) -> None:
        if index == 0 and attempt == 1:
            fstack.sandbox.remove_service_account(support.SMC_KEY)
        if index == 0 and attempt == 3 and not rotated["done"]:
            fstack.set_secret(apiKey="svc-key-rotated", apiSecret="svc-secret-rotated")
            rotated["done"] = True

    workload = mixed_workload()
    seed_rows(workload)  # with the old key, before it is revoked
    workload.seed = []
    _tally, run = run_case(
        "SMC 401 until the secret is rotated", fstack, workload=workload, hook=hook, retry_delay_s=0.3
    )
    assert [a.status for a in run.attempts[:3]] == [503, 503, 200]
    assert 401 in {r.status for r in fstack.sandbox.requests_log}


def test_smc_404_unknown_events_list_until_it_is_created(fstack):
    fstack.set_env(SMC_EVENTS_LIST="segment_events_new")

    def hook(index: int, attempt: int) -> None:
        if index == 1 and attempt == 3:
            fstack.sandbox.add_list(support.ORG, "segment_events_new", EVENTS_FIELDS)
            support.narrow_event_name(fstack.sandbox, "segment_events_new")

    workload = mixed_workload(seed_deletions=False)
    workload.events_list = "segment_events_new"
    workload.deliveries.insert(0, workload.deliveries.pop(5))  # membership first: its target exists
    _tally, run = run_case("SMC 404 unknown list, then created", fstack, workload=workload, hook=hook)
    assert sum(1 for r in fstack.sandbox.requests_log if r.status == 404) >= 2
    assert run.statuses()["503"] >= 2


def test_smc_404_unknown_segment_until_it_is_created(fstack):
    def hook(index: int, attempt: int) -> None:
        if index == 5 and attempt == 2:
            fstack.sandbox.add_segment(support.ORG, "users", "vip_new")

    workload = mixed_workload(segment="vip_new")
    _tally, _run = run_case("SMC 404 unknown segment, then created", fstack, workload=workload, hook=hook)
    assert sum(1 for r in fstack.sandbox.requests_log if r.status == 404) >= 1


@pytest.mark.parametrize("after_processing", [False, True], ids=["slow-then-applied", "applied-then-slow"])
def test_smc_slower_than_the_deadline(fstack, after_processing):
    """SMC takes 1.2 s; the handler gives up at 0.7 s and answers 503. A write SMC applies after
    the handler gave up lands before the retry (Segment's back-off is seconds; 0.6 s here)."""
    make = lambda: Fault(delay_s=1.2, after_processing=after_processing, path_contains="/data")  # noqa: E731
    label = "SMC slower than the deadline" + (" (applied, answer late)" if after_processing else "")
    hook = per_delivery(fstack, make, only=SOME)
    _tally, run = run_case(label, fstack, hook=hook, retry_delay_s=0.6, settle_s=0.6)
    assert run.statuses()["503"] == len(SOME)
    assert max(a.seconds for a in run.attempts) < 1.5


@pytest.mark.parametrize(
    ("after_processing", "times", "heal_at"),
    [(False, 1, None), (True, 1, None), (True, -1, 2)],
    ids=["before-processing", "after-processing", "after-processing-until-healed"],
)
def test_smc_connection_dropped_mid_response(fstack, after_processing, times, heal_at):
    make = lambda: Fault(  # noqa: E731
        drop_connection=True,
        send_headers=True,
        after_processing=after_processing,
        times=times,
        path_contains="/data",
    )
    label = (
        "SMC drops the connection mid-response"
        + (" after applying (answer lost)" if after_processing else "")
        + (" until healed" if heal_at else "")
    )
    tally, run = run_case(label, fstack, hook=per_delivery(fstack, make, heal_at))
    assert sum(1 for r in fstack.sandbox.requests_log if r.status is None) >= 9
    if after_processing:
        assert tally.resent_rows > 0  # SMC saw those rows twice and kept one of each
    if heal_at:
        assert run.statuses()["503"] >= 9


def test_answer_lost_on_the_way_to_segment_and_batch_reformed(fstack):
    """The handler delivered but Segment never got the answer; it retries with the batch re-formed
    (other events together, so another idempotency key): the MESSAGE_ID upsert keeps one row."""
    tally, run = run_case(
        "answer lost on the way to Segment, batch re-formed on retry",
        fstack,
        lose_answer=lambda index, attempt: attempt == 1,
        reform_on_retry=True,
    )
    assert run.statuses()["lost"] >= 9 and tally.resent_rows > 0


def test_answer_lost_on_the_way_to_segment_is_replayed_from_memory(fstack):
    tally, run = run_case(
        "answer lost on the way to Segment, same request retried",
        fstack,
        lose_answer=lambda index, attempt: attempt == 1,
    )
    assert run.statuses()["lost"] >= 9 and tally.resent_rows == 0


# -- AWS faults ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["refuse", "error", "throttle", "hang"])
def test_secrets_manager_down_at_cold_start_is_503_then_recovers(fstack, aws_proxy, mode):
    proxy = aws_proxy("secretsmanager")
    workload = mixed_workload()
    seed_rows(workload)  # warms a runtime that the cold start below throws away
    workload.seed = []

    def hook(index: int, attempt: int) -> None:
        if index == 0 and attempt == 1:
            fstack.set_env()  # a cold start: no cached secret
            proxy.set_mode(mode)  # type: ignore[arg-type]
        if index == 0 and attempt == 3:
            proxy.set_mode("pass")

    _tally, run = run_case(f"Secrets Manager {mode} at cold start", fstack, workload=workload, hook=hook)
    first = run.attempts[:3]
    assert [a.status for a in first] == [503, 503, 200], first
    assert all(a.seconds < 5 for a in run.attempts)
    assert fstack.sandbox.requests_log  # delivered after recovery


def test_secrets_manager_down_while_warm_still_delivers_from_the_cache(fstack, aws_proxy):
    proxy = aws_proxy("secretsmanager")
    workload = mixed_workload()
    seed_rows(workload)  # warm: the secret is cached (SECRET_MAX_AGE_SECONDS 300)
    workload.seed = []
    proxy.set_mode("refuse")
    _tally, run = run_case("Secrets Manager down, warm cache", fstack, workload=workload)
    assert retried(run) == 0


def test_secrets_manager_down_when_the_cache_expires_is_503_then_recovers(fstack, aws_proxy, monkeypatch):
    monkeypatch.setenv("SECRET_MAX_AGE_SECONDS", "1")
    proxy = aws_proxy("secretsmanager")
    workload = mixed_workload()
    seed_rows(workload)
    workload.seed = []

    def hook(index: int, attempt: int) -> None:
        if index == 2 and attempt == 1:
            time.sleep(1.1)
            proxy.set_mode("refuse")
        if index == 2 and attempt == 3:
            proxy.set_mode("pass")

    _tally, run = run_case("Secrets Manager down, cache expired", fstack, workload=workload, hook=hook)
    assert [a.status for a in run.attempts if a.delivery == 2] == [503, 503, 200]


@pytest.mark.parametrize("mode", ["refuse", "throttle", "error", "hang"])
def test_dynamodb_down_delivers_relying_on_smc_upserts(fstack, aws_proxy, monkeypatch, mode):
    """No idempotency store: every request is still delivered in time (the production deadline);
    a redelivered request reaches SMC again and the MESSAGE_ID upsert keeps one row (membership
    changes are idempotent). A hang or throttling costs 1-2 s a request: they cover requests 6-9."""
    monkeypatch.delenv("RESPONSE_DEADLINE_MS")
    proxy = aws_proxy("dynamodb")
    window = range(6, 10) if mode in ("hang", "throttle") else range(0, 99)

    def hook(index: int, attempt: int) -> None:
        proxy.set_mode(mode if index in window else "pass")  # type: ignore[arg-type]

    tally, run = run_case(
        f"DynamoDB {mode} (idempotency store)",
        fstack,
        hook=hook,
        replay_memory=False,
        lose_answer=lambda index, attempt: index == 7 and attempt == 1,
    )
    assert retried(run) == 1 and all(a.seconds < 5 for a in run.attempts), run.attempts
    assert tally.resent_rows > 0  # the redelivered requests hit SMC again, absorbed by the upsert
    assert proxy.seen > 0 or mode == "refuse"


def test_dynamodb_hanging_and_smc_slow_together_still_answer_within_segments_wait(
    fstack, aws_proxy, monkeypatch
):
    """The time the idempotency store takes comes out of RESPONSE_DEADLINE_MS (production 4500):
    a hung store (~2 s) plus a slow SMC is still answered 503 inside Segment's 5 s, not after."""
    monkeypatch.delenv("RESPONSE_DEADLINE_MS")
    proxy = aws_proxy("dynamodb")

    def hook(index: int, attempt: int) -> None:
        broken = index == 6 and attempt == 1
        proxy.set_mode("hang" if broken else "pass")
        fstack.sandbox.clear_faults()
        if broken:
            fstack.sandbox.inject(Fault(delay_s=4.0, times=-1, path_contains="/data"))

    _tally, run = run_case(
        "DynamoDB hanging and SMC slow at once", fstack, hook=hook, replay_memory=False, settle_s=2.5
    )
    broken = [a for a in run.attempts if a.delivery == 6]
    assert [a.status for a in broken] == [503, 200] and broken[0].seconds < 5, broken


def test_dynamodb_down_then_back_mid_run(fstack, aws_proxy):
    proxy = aws_proxy("dynamodb")

    def hook(index: int, attempt: int) -> None:
        proxy.set_mode("refuse" if 2 <= index <= 5 else "pass")

    _tally, run = run_case("DynamoDB down for part of the run", fstack, hook=hook, replay_memory=False)
    assert retried(run) == 0


# -- Lambda faults -------------------------------------------------------------------------------------
class Killed(BaseException):
    """The Lambda runtime stopping the function: no `except Exception` sees it, nothing cleans up."""


@pytest.mark.parametrize("when", ["after-smc-applied", "before-smc"])
def test_lambda_killed_mid_request_then_redelivered(fstack, monkeypatch, when):
    """The first attempt of every request dies inside the SMC call. Its in-progress record blocks
    redeliveries (429, never 409, never a second delivery) until it expires with the killed
    invocation's time; the redelivery after that delivers, and SMC still holds one row each."""
    armed = {"on": False}
    original = requests.Session.request

    def dying_request(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if armed["on"] and "/data" in url:
            armed["on"] = False
            if when == "before-smc":
                raise Killed
            original(self, method, url, *args, **kwargs)
            raise Killed
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", dying_request)

    def hook(index: int, attempt: int) -> None:
        armed["on"] = attempt == 1 and index in SOME

    _tally, run = run_case(
        f"Lambda killed mid-request ({when.replace('-', ' ')})",
        fstack,
        hook=hook,
        retry_delay_s=0.4,
        max_attempts=10,
        context=lambda: support.FakeContext(timeout_ms=1800),
    )
    statuses = run.statuses()
    assert statuses["crashed"] == len(SOME) and statuses["429"] >= len(SOME), statuses
    assert "409" not in statuses and set(statuses) <= {"crashed", "429", "200"}, statuses
    per_id = {}
    for a in run.attempts:
        per_id.setdefault(a.delivery, []).append("crashed" if a.status is None else a.status)
    for delivery, seen in per_id.items():
        if seen[0] == "crashed":
            assert seen[-1] == 200 and set(seen[1:-1]) <= {429}, (delivery, seen)


def test_a_failing_aws_call_is_tried_twice_in_all_not_three_times(stack, aws_proxy):
    """The worst case the deadlines count on (`handler.aws`): one retry, not botocore's two."""
    proxy = aws_proxy("dynamodb")
    proxy.only = "PutItem"  # the idempotency record's first write
    proxy.set_mode("error")
    status, body, _ = invoke(api_event([support.track()]))
    assert status == 200 and body["delivered"] == 1, body  # delivered without the store
    assert proxy.operations.count("PutItem") == 2
