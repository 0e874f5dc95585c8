"""Warm measurements in one fresh process: throughput against the baselines, SMC calls, latency.

Run by `bench.run` as `python -m bench.worker {throughput,latency} OUT.json` with the stack's
environment; the handler's own log lines and EMF metrics go to this process's stdout (as in
Lambda), which `bench.run` discards.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from bench import env as benv
from bench.references import References
from bench.workload import MIX, MIX_ENGAGE, MIX_WITHOUT_GROUPS, request
from tests.support import FakeContext as Context
from tests.support import sqs_event

SIZES = (1, 100, 1000, 4000)
_DEFAULT_SIZES = ",".join(map(str, SIZES))


def _handler() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    from handler.app import lambda_handler

    return cast(Callable[[dict[str, Any], Any], dict[str, Any]], lambda_handler)


def invoke(api_event: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """One handler call through the real entry point: (seconds, parsed answer)."""
    handler = _handler()
    context = Context()
    started = time.perf_counter()
    response = handler(api_event, context)
    elapsed = time.perf_counter() - started
    return elapsed, {"status": response["statusCode"], **json.loads(response["body"])}


def _check(answer: dict[str, Any], expected: int, status: int = 200) -> None:
    if answer.get("status") != status or (status == 200 and answer.get("delivered") != expected):
        raise RuntimeError(f"unexpected answer for {expected} events: {json.dumps(answer)[:400]}")


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def samples_for(size: int, scale: float) -> tuple[int, int]:
    """(product/floor samples, naive samples) for a body size; `scale` < 1 for smoke runs."""
    product = 60 if size <= 1 else 25 if size <= 100 else 15 if size <= 1000 else 5
    naive = 60 if size <= 1 else 5 if size <= 100 else 3 if size <= 1000 else 1
    return max(1, round(product * scale)), max(1, round(naive * scale))


def throughput(stack: benv.Stack, sizes: tuple[int, ...], scale: float) -> dict[str, Any]:
    refs = References(stack.api_url)
    for size in (1, 100, 1000):  # warm-up: pools, caches, first-call imports
        _check(invoke(request(size))[1], size)
        refs.floor(request(size))
        refs.naive(request(min(size, 100)))
    results: dict[str, Any] = {}
    for size in sizes:
        count, naive_count = samples_for(size, scale)
        product_s: list[float] = []
        floor_s: list[float] = []
        naive_s: list[float] = []
        replay_s: list[float] = []
        for sample in range(count):  # interleaved, so drift hits every contender alike
            benv.reset_sandbox(stack)  # every round meets the same, small SMC state
            api_event = request(size)
            gc.collect()
            seconds, answer = invoke(api_event)
            _check(answer, size)
            product_s.append(seconds)
            replay_seconds, replay = invoke(api_event)  # the same events again: answered from memory
            _check(replay, size)
            replay_s.append(replay_seconds)
            floor_event = request(size)
            gc.collect()
            floor_s.append(_timed(lambda e=floor_event: refs.floor(e)))  # type: ignore[misc]
            if sample < naive_count:
                naive_event = request(size)
                gc.collect()
                naive_s.append(_timed(lambda e=naive_event: refs.naive(e)))  # type: ignore[misc]
        results[str(size)] = {
            "events": size,
            "product_s": product_s,
            "floor_s": floor_s,
            "naive_s": naive_s,
            "replay_s": replay_s,
        }
    return results


def smc_calls(stack: benv.Stack, size: int = 1000, mix: tuple[str, ...] = MIX) -> dict[str, Any]:
    """SMC calls one realistic `size`-event request costs, from the sandbox's request log."""
    benv.clear_log(stack)
    _check(invoke(request(size, mix))[1], size)
    log = benv.smc_log(stack)
    targets = {(r["method"], r["path"], json.dumps(r["query"], sort_keys=True)) for r in log}
    return {
        "events": size,
        "calls": len(log),
        "distinct_targets": len(targets),
        "rows": sum(r["rows"] or 0 for r in log),
        "log": [{k: r[k] for k in ("method", "path", "rows", "status")} for r in log],
    }


def latency(stack: benv.Stack, scale: float, slow_s: float = 0.2, stuck_s: float = 6.0) -> dict[str, Any]:
    """Answer times with SMC answering in `slow_s`, and with SMC stuck for `stuck_s`."""
    refs = References(stack.api_url)
    _check(invoke(request(10))[1], 10)
    out: dict[str, Any] = {"smc_latency_s": slow_s}
    count = max(1, round(5 * scale))
    try:
        benv.set_latency(stack, slow_s)
        for size in (1, 1000):
            product_s, floor_s = [], []
            for _ in range(count):
                seconds, answer = invoke(request(size))
                _check(answer, size)
                product_s.append(seconds)
                floor_event = request(size)
                floor_s.append(_timed(lambda e=floor_event: refs.floor(e)))  # type: ignore[misc]
            out[str(size)] = {"product_s": product_s, "floor_s": floor_s}
        # One call per event pays the round trip per event: 10 events say enough about its rate.
        naive_event = request(10)
        out["naive_10"] = {"events": 10, "naive_s": _timed(lambda: refs.naive(naive_event))}
        benv.set_latency(stack, stuck_s)
        seconds, answer = invoke(request(1000))
        _check(answer, 1000, status=503)
        out["stuck"] = {"smc_latency_s": stuck_s, "events": 1000, "answer_s": seconds, "status": 503}
        out["stuck"]["deadline_ms"] = int(os.environ.get("RESPONSE_DEADLINE_MS", "4500"))
    finally:
        benv.set_latency(stack, 0.0)
    return out


def ordering(stack: benv.Stack, scale: float, size: int = 1000) -> dict[str, Any]:
    """What order safety costs: the same realistic request (100 group calls per 1,000 events)
    with the ordering store on and off, and a request without group calls, on and off; rounds
    interleaved, so drift hits every variant alike."""
    from handler.runtime import get_runtime
    from handler.stores import Stores

    runtime = get_runtime()
    store = runtime.stores
    if store.ordering is None:
        raise RuntimeError("the bench stack sets STATE_TABLE: ordering must be on")
    variants = {
        "groups_on": (MIX, store),
        "groups_off": (MIX, Stores()),
        "no_groups_on": (MIX_WITHOUT_GROUPS, store),
        "no_groups_off": (MIX_WITHOUT_GROUPS, Stores()),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    count = max(1, round(15 * scale))
    try:
        for _ in range(2):  # warm-up
            for mix, chosen in variants.values():
                runtime.stores = chosen
                _check(invoke(request(size, mix))[1], size)
        for _ in range(count):
            for name, (mix, chosen) in variants.items():
                benv.reset_sandbox(stack)
                runtime.stores = chosen
                api_event = request(size, mix)
                gc.collect()
                seconds, answer = invoke(api_event)
                _check(answer, size)
                samples[name].append(seconds)
    finally:
        runtime.stores = store
    groups = sum(1 for kind in itertools.islice(itertools.cycle(MIX), size) if kind == "group")
    return {"events": size, "group_events": groups, **{f"{name}_s": s for name, s in samples.items()}}


# Profiles and audiences on the bench sandbox's user list (its default seed has these columns).
PROFILE_ENV = {
    "SMC_PROFILE_LIST": "users",
    "SMC_PROFILE_KEY": "CUSTOMER_ID",
    "SMC_PROFILE_FIELDS": json.dumps({"MAIL": "traits.email", "FIRSTNAME": "traits.firstName"}),
    "SMC_AUDIENCES": "true",
}


def profiles(stack: benv.Stack, scale: float, size: int = 1000) -> dict[str, Any]:
    """The realistic request with profiles and audiences on (one event in 20 an audience change):
    its time next to the floor's, and its SMC calls against its distinct targets."""
    from handler.app import reset_runtime

    refs = References(stack.api_url)
    os.environ.update(PROFILE_ENV)
    reset_runtime()
    try:
        for _ in range(2):  # warm-up; the audiences' segments are created on the first one
            _check(invoke(request(size, MIX_ENGAGE))[1], size)
        product_s: list[float] = []
        floor_s: list[float] = []
        for _ in range(max(1, round(15 * scale))):
            benv.empty_state_table(stack)  # the SMC state stays: the segments exist from the warm-up
            api_event = request(size, MIX_ENGAGE)
            gc.collect()
            seconds, answer = invoke(api_event)
            _check(answer, size)
            product_s.append(seconds)
            floor_event = request(size)
            gc.collect()
            floor_s.append(_timed(lambda e=floor_event: refs.floor(e)))  # type: ignore[misc]
        calls = smc_calls(stack, size, MIX_ENGAGE)
    finally:
        for name in PROFILE_ENV:
            os.environ.pop(name, None)
        reset_runtime()
    return {"events": size, "product_s": product_s, "floor_s": floor_s, "smc_calls": calls}


class Poller:
    """A stand-in for Lambda's SQS event source: gathers up to `batch_size` messages (the template's
    BatchSize), hands them to `handler.consumer.lambda_handler` as one SQS event and deletes what
    it reports done. Lambda's batching window and poll interval are left out: they are settings."""

    def __init__(self, sqs: Any, queue_url: str, batch_size: int = 100) -> None:
        self.sqs, self.url, self.batch_size = sqs, queue_url, batch_size

    def _receive(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while len(batch) < self.batch_size:
            answer = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(10, self.batch_size - len(batch)),
                AttributeNames=["All"],
                VisibilityTimeout=60,
                WaitTimeSeconds=0,
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            batch.extend(messages)
        return batch

    def poll_once(self) -> int:
        """One consumer invocation; returns how many messages it got (0: the queue is empty)."""
        from handler.consumer import lambda_handler as consumer

        batch = self._receive()
        if not batch:
            return 0
        answer = consumer(
            sqs_event(batch, "arn:aws:sqs:eu-west-1:123456789012:bench-delivery"), Context(timeout_ms=60_000)
        )
        if answer["batchItemFailures"]:
            raise RuntimeError(f"consumer failed messages: {answer['batchItemFailures']}")
        for start in range(0, len(batch), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(batch[start : start + 10])
            ]
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
        return len(batch)

    def drain(self) -> int:
        """Consumer invocations until the queue is empty; returns how many ran."""
        runs = 0
        while self.poll_once():
            runs += 1
        return runs


def queued(stack: benv.Stack, sizes: tuple[int, ...], scale: float) -> dict[str, Any]:
    """Queued delivery next to sync, in this process: the webhook's answer time (it only
    enqueues) and end to end (webhook, then the consumer draining the queue to SMC), in events/s.

    Sync rounds run first; then `DELIVERY_MODE=queued` with an SQS queue in moto."""
    import boto3

    from handler.app import reset_runtime

    big = max(sizes)
    count = max(1, round(10 * scale))
    out: dict[str, Any] = {"events": big, "rounds": count, "sync": {}, "queued": {}}
    _check(invoke(request(big))[1], big)  # warm-up (sync)
    sync_s: list[float] = []
    for _ in range(count):
        benv.reset_sandbox(stack)
        api_event = request(big)
        gc.collect()
        seconds, answer = invoke(api_event)
        _check(answer, big)
        sync_s.append(seconds)
    out["sync"][str(big)] = {"end_to_end_s": sync_s}

    sqs = boto3.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    dlq_url = sqs.create_queue(QueueName=f"bench-dlq-{suffix}")["QueueUrl"]
    url = sqs.create_queue(QueueName=f"bench-delivery-{suffix}", Attributes={"VisibilityTimeout": "60"})[
        "QueueUrl"
    ]
    os.environ.update(DELIVERY_MODE="queued", DELIVERY_QUEUE_URL=url, DEAD_LETTER_QUEUE_URL=dlq_url)
    reset_runtime()
    poller = Poller(sqs, url)
    try:
        for size in sizes:  # warm-up: runtime, SQS client, consumer
            _check(invoke(request(size))[1], 0)
            poller.drain()
        for size in sizes:
            webhook_s: list[float] = []
            end_to_end_s: list[float] = []
            consumer_runs: list[int] = []
            for _ in range(count):
                benv.reset_sandbox(stack)
                api_event = request(size)
                gc.collect()
                started = time.perf_counter()
                seconds, answer = invoke(api_event)
                if answer.get("status") != 200 or answer.get("enqueued") != size:
                    raise RuntimeError(f"unexpected queued answer: {json.dumps(answer)[:400]}")
                consumer_runs.append(poller.drain())
                end_to_end_s.append(time.perf_counter() - started)
                webhook_s.append(seconds)
            rows = sum(r["rows"] or 0 for r in benv.smc_log(stack))
            if rows < size:
                raise RuntimeError(f"the consumer delivered {rows} rows for {size} events")
            out["queued"][str(size)] = {
                "events": size,
                "webhook_s": webhook_s,
                "end_to_end_s": end_to_end_s,
                "consumer_invocations": consumer_runs,
            }
    finally:
        for name in ("DELIVERY_MODE", "DELIVERY_QUEUE_URL", "DEAD_LETTER_QUEUE_URL"):
            os.environ.pop(name, None)
        reset_runtime()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("what", choices=("throughput", "latency", "queued", "ordering", "profiles"))
    parser.add_argument("out", help="where to write the JSON result")
    parser.add_argument("--sizes", default=_DEFAULT_SIZES)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the samples (smoke runs)")
    parser.add_argument("--slow", type=float, default=0.2, help="SMC latency (s) of the latency runs")
    parser.add_argument("--stuck", type=float, default=6.0, help="SMC latency (s) past the deadline")
    args = parser.parse_args(argv)
    stack = benv.Stack.from_json(os.environ["BENCH_STACK"])
    import handler.app

    print(f"measuring {handler.app.__file__}", file=sys.stderr)
    if args.what == "throughput":
        sizes = tuple(int(s) for s in args.sizes.split(","))
        result: dict[str, Any] = {"throughput": throughput(stack, sizes, args.scale)}
        result["smc_calls"] = smc_calls(stack, 1000 if 1000 in sizes else max(sizes))
    elif args.what == "profiles":
        size = int(args.sizes) if args.sizes != _DEFAULT_SIZES else 1000
        result = {"profiles": profiles(stack, args.scale, size)}
    elif args.what == "ordering":
        size = int(args.sizes) if args.sizes != _DEFAULT_SIZES else 1000
        result = {"ordering": ordering(stack, args.scale, size)}
    elif args.what == "queued":
        sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes != _DEFAULT_SIZES else (1, 1000)
        result = {"queued": queued(stack, sizes, args.scale)}
    else:
        result = {"latency": latency(stack, args.scale, args.slow, args.stuck)}
    result["handler_file"] = handler.app.__file__
    with open(args.out, "w") as handle:
        json.dump(result, handle)
    print(f"{args.what}: done", file=sys.stderr)
    return 0


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


if __name__ == "__main__":
    raise SystemExit(main())
