"""Logger, metrics and tracer shared by every module (Powertools), plus a thread-safe metric buffer."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class _Untraced(BaseSegment):
    """A subsegment that records nothing."""

    def close(self, end_time: int | None = None) -> None:
        """Nothing to close."""

    def add_subsegment(self, subsegment: Any) -> None:
        """Nothing to add."""

    def remove_subsegment(self, subsegment: Any) -> None:
        """Nothing to remove."""

    def put_annotation(self, key: str, value: Any) -> None:
        """Dropped."""

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Dropped."""

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        """Dropped."""


class _TracingOff(BaseProvider):
    """What Powertools' X-Ray provider does when tracing is off (nothing), minus its cost: the X-Ray
    SDK is never imported (~20 ms of a Lambda cold start) and, outside Lambda, never starts
    its sampling client (~140 ms more)."""

    _segment = _Untraced()

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        """An untraced block."""
        yield self._segment

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        """An untraced async block."""
        yield self._segment

    def put_annotation(self, key: str, value: Any) -> None:
        """Dropped."""

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Dropped."""

    def patch(self, modules: Sequence[str]) -> None:
        """Nothing to patch."""

    def patch_all(self) -> None:
        """Nothing to patch."""


# Service name, namespace and level come from POWERTOOLS_* variables (template Globals).
logger = Logger(use_rfc3339=True)
metrics = Metrics()
# Only requests and botocore are patched: the SMC call and AWS calls are what an on-call reads.
# Tracing off (POWERTOOLS_TRACE_DISABLED, or not in Lambda; Powertools' own rule decides): the same
# Tracer, but over a provider that skips the X-Ray SDK.
tracer = Tracer(
    patch_modules=("requests", "botocore"),
    provider=_TracingOff() if Tracer._is_tracer_disabled() else None,
)

_lock = threading.Lock()
_counts: defaultdict[str, float] = defaultdict(float)
_timings: defaultdict[str, list[float]] = defaultdict(list)

T = TypeVar("T")


def count(name: str, value: float = 1) -> None:
    """Add to a count metric; safe from worker threads, flushed by `flush_metrics`."""
    with _lock:
        _counts[name] += value


def timing(name: str, milliseconds: float) -> None:
    """Record one duration sample in milliseconds."""
    with _lock:
        _timings[name].append(round(milliseconds, 1))


def flush_metrics() -> None:
    """Move buffered samples into the Powertools Metrics of this invocation."""
    with _lock:
        counts, timings = dict(_counts), {k: list(v) for k, v in _timings.items()}
        _counts.clear()
        _timings.clear()
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for name, samples in timings.items():
        for sample in samples[:100]:  # EMF takes at most 100 values per metric
            metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=sample)


def _emit_now(name: str, value: float, unit: MetricUnit, **dimensions: str) -> None:
    """One metric on its own EMF line, now, with `service` and the given dimensions."""
    service = str(metrics.service or "segment-smc-destination")
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=metrics.namespace,
        default_dimensions={"service": service},
    ) as metric:
        for dimension, dimension_value in dimensions.items():
            metric.add_dimension(name=dimension, value=dimension_value)


def count_per_type(name: str, counts: dict[str, int]) -> None:
    """One metric per event type (dimension `EventType`), beside the service-wide totals."""
    for event_type, value in sorted(counts.items()):
        _emit_now(name, value, MetricUnit.Count, EventType=event_type)


def gauge(name: str, value: float) -> None:
    """A measured value (not a count), emitted at once with the `service` dimension only."""
    _emit_now(name, value, MetricUnit.NoUnit)


def in_thread_with_trace(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap `fn` so that, in a worker thread, X-Ray subsegments attach to the caller's segment."""
    if tracer.disabled:
        return fn
    recorder: Any = tracer.provider  # aws_xray_sdk's recorder; Powertools types it as a base class
    entity = recorder.get_trace_entity()

    def run(*args: Any, **kwargs: Any) -> T:
        recorder.set_trace_entity(entity)
        return fn(*args, **kwargs)

    return run
