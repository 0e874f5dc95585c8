"""`smc-destination replay FILE`: send Segment events from a file to SMC through the Lambda's own code.

Every batch goes through `handler.events.admit` (validation, `integrations` opt-outs, the
SMC_ALLOWED_EVENTS and SMC_SEND_* settings) and `handler.delivery.deliver` (the same mappers and
SMC client), exactly as a webhook request would. After each batch the checkpoint records the events
settled for good (delivered, filtered, duplicate, rejected); events SMC could not take now (retried)
are not recorded, so running the same command again resumes where it stopped and sends nothing twice.
The first Ctrl-C finishes the batch in flight and stops; a second one aborts at once.

Exit codes: 0 all settled; 1 some events rejected (resending cannot help; see --failures);
75 some events retried (run again to resume); 2 bad input or settings; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from handler.cli.checkpoint import Checkpoint, CheckpointError, default_path, load
from handler.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_TEMPFAIL,
    CliError,
    Smc,
    add_connection_options,
    connect,
)
from handler.cli.source import Item, read_source
from handler.delivery import deliver, plan_events
from handler.events import admit
from handler.request import MAX_EVENTS_PER_REQUEST
from handler.stores import stores_for

FINAL = ("delivered", "filtered", "duplicate", "rejected")
SHOWN = (*FINAL, "retried")
EXAMPLES = """examples:
  smc-destination replay events.ndjson --dry-run
  smc-destination replay events.ndjson --checkpoint /var/tmp/events.ckpt.json --failures failed.ndjson
  smc-destination replay dlq-export.json --batch-size 200 --max-batches 1   # a first, small step
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `replay`."""
    parser = commands.add_parser(
        "replay",
        help="send Segment events from a JSON/NDJSON file to SMC, resumably",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="JSON array/document or NDJSON of events")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (default: FILE.checkpoint.json)")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="validate and plan only: send nothing")
    parser.add_argument("--max-batches", type=int, help="stop after this many batches (resume later)")
    parser.add_argument("--restart", action="store_true", help="ignore the checkpoint and start over")
    parser.add_argument(
        "--keep-going", action="store_true", help="go on after a batch SMC could not take (default: stop)"
    )
    parser.add_argument(
        "--failures", type=Path, help="append rejected and retried events' reasons here (NDJSON)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_connection_options(parser)
    parser.set_defaults(run=run)


class Interrupts:
    """First SIGINT/SIGTERM: stop after the batch in flight. Second: abort now (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after the batch in flight (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Progress:
    """A text progress bar on stderr (one line per batch when stderr is not a terminal)."""

    WIDTH = 30

    def __init__(
        self, total: int, done: int, enabled: bool, dry_run: bool = False, stream: TextIO | None = None
    ) -> None:
        self.total, self.done, self.enabled, self.dry_run = total, done, enabled, dry_run
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def update(self, settled: int, batch: int, batches: int, counts: Counter[str]) -> None:
        """Show `settled` more events done after batch number `batch`."""
        self.done += settled
        if not self.enabled:
            return
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(share * self.WIDTH)
        names = {"delivered": "would-send"} if self.dry_run else {}
        tally = " ".join(f"{names.get(k, k)} {counts[k]}" for k in SHOWN if counts[k])
        line = (
            f"[{bar:<{self.WIDTH}}] {share:4.0%} {self.done}/{self.total} events  "
            f"batch {batch}/{batches}  {tally}"
        )
        if self.tty:
            print("\r" + line, end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def finish(self) -> None:
        """End the bar's line."""
        if self.enabled and self.tty:
            print(file=self.stream, flush=True)


def _now() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


Settled = list[tuple[Item, str, str | None, str]]  # (item, outcome, reason, messageId)


def send_batch(batch: list[Item], smc: Smc, dry_run: bool) -> tuple[Settled, int]:
    """Admit and deliver one batch (or, dry, only plan it): every item's outcome, and the calls planned."""
    settled: Settled = []
    readable = [item for item in batch if item.problem is None]
    settled.extend((item, "rejected", item.problem, "") for item in batch if item.problem is not None)
    if not readable:
        return settled, 0
    report, admitted = admit([item.event for item in readable], smc.settings, _now())
    calls = 0
    if dry_run:
        calls = sum(len(phase) for phase in plan_events(admitted, smc.settings).phases)
        for event in admitted:
            report.settle(event.index, "delivered", "dry run: would be sent")
    elif admitted:
        deliver(admitted, report, smc.settings, smc.client, smc.deadline(), stores=stores_for(smc.settings))
    for item, result in zip(readable, report.results, strict=True):
        settled.append((item, result.outcome or "retried", result.reason, result.message_id))
    return settled, calls


def _write_failures(path: Path | None, settled: Settled) -> None:
    failures = [s for s in settled if s[1] in ("rejected", "retried")]
    if path is None or not failures:
        return
    with path.open("a", encoding="utf-8") as handle:
        for item, outcome, reason, message_id in failures:
            record = {
                "position": item.position,
                "line": item.line,
                "messageId": message_id,
                "outcome": outcome,
                "reason": reason,
                "at": _now(),
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _open_checkpoint(args: argparse.Namespace, sha256: str, events: int) -> Checkpoint:
    path = args.checkpoint or default_path(args.file)
    if args.restart:
        return Checkpoint(path, str(args.file), sha256, events)
    try:
        return load(path, args.file, sha256, events)
    except CheckpointError as exc:
        raise CliError(str(exc), "pass another --checkpoint, or --restart to start over") from None


def _summary(
    args: argparse.Namespace, totals: Counter[str], reasons: dict[str, Counter[str]], ckpt: Checkpoint
) -> None:
    label = "dry run of" if args.dry_run else "replay"
    print(f"{label} {args.file}: {ckpt.events} events")
    for outcome in SHOWN:
        name = "would send" if args.dry_run and outcome == "delivered" else outcome
        examples = "; ".join(f"{r} x{n}" for r, n in reasons[outcome].most_common(3))
        print(f"  {name:<10} {totals[outcome]:>7}" + (f"   ({examples})" if examples else ""))
    if args.dry_run:
        print(f"  SMC calls it would make: {totals['calls']}; nothing was sent or recorded.")
        return
    print(f"  settled before this run: {totals['skipped']}; settled now: {ckpt.done_count()}/{ckpt.events}")
    overall = ", ".join(f"{k} {v}" for k, v in sorted(ckpt.counts.items()) if v)
    print(f"  all runs so far: {overall or 'nothing settled'}")
    print(f"checkpoint: {ckpt.path}")


def run(args: argparse.Namespace) -> int:
    """Replay the file batch by batch, recording progress in the checkpoint."""
    if not 1 <= args.batch_size <= MAX_EVENTS_PER_REQUEST:
        raise CliError(f"--batch-size must be 1..{MAX_EVENTS_PER_REQUEST}", "e.g. --batch-size 500")
    if args.max_batches is not None and args.max_batches < 1:
        raise CliError("--max-batches must be at least 1", "omit it to replay everything")
    try:
        source = read_source(args.file)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {args.file}: {exc}", "pass a JSON or NDJSON file of events") from None
    ckpt = _open_checkpoint(args, source.sha256, len(source.items))
    pending = [item for item in source.items if not ckpt.is_done(item.position)]
    totals: Counter[str] = Counter(skipped=len(source.items) - len(pending))
    reasons: dict[str, Counter[str]] = {outcome: Counter() for outcome in SHOWN}
    if not pending:
        print(f"nothing to do: all {len(source.items)} events of {args.file} are settled ({ckpt.path})")
        return EXIT_OK
    smc = connect(args, need_credentials=not args.dry_run)
    if not args.dry_run:
        smc.credentials.get()  # an unreadable secret stops here, before anything is sent
    batches = [pending[i : i + args.batch_size] for i in range(0, len(pending), args.batch_size)]
    progress = Progress(len(source.items), totals["skipped"], not args.quiet, args.dry_run)
    interrupted = stopped_on_retry = False
    with Interrupts() as interrupts:
        try:
            for number, batch in enumerate(batches, start=1):
                if interrupts.requested or (args.max_batches and number > args.max_batches):
                    break
                settled, calls = send_batch(batch, smc, args.dry_run)
                totals["calls"] += calls
                for _, outcome, reason, _ in settled:
                    totals[outcome] += 1
                    if reason and outcome != "delivered":
                        reasons[outcome][reason[:120]] += 1
                done = [s for s in settled if s[1] in FINAL]
                if not args.dry_run:
                    ckpt.mark([s[0].position for s in done], Counter(s[1] for s in done))
                    ckpt.save()
                    _write_failures(args.failures, settled)
                progress.update(len(done), number, len(batches), totals)
                if len(done) < len(settled) and not args.keep_going:
                    stopped_on_retry = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        progress.finish()
    interrupted = interrupted or interrupts.requested
    _summary(args, totals, reasons, ckpt)
    left = len(source.items) - ckpt.done_count()
    if args.dry_run:
        return EXIT_PROBLEMS if totals["rejected"] else EXIT_OK
    if totals["retried"] or stopped_on_retry:
        print(f"{totals['retried']} event(s) SMC could not take now: run the same command again to resume.")
        return EXIT_TEMPFAIL
    if interrupted and left:
        print(f"interrupted: {left} event(s) left; run the same command again to resume.")
        return EXIT_INTERRUPTED
    if left:
        print(f"stopped after {args.max_batches} batch(es): {left} event(s) left; run again to go on.")
    return EXIT_PROBLEMS if totals["rejected"] else EXIT_OK
