"""`smc-destination redrive`: move queued-mode dead letters back to the delivery queue.

Run it once the cause in the messages' `failure_reason` is fixed. A message leaves the
dead-letter queue only after the delivery queue accepted it, and SMC loads are upserts keyed on
MESSAGE_ID, so an interrupted or repeated redrive never duplicates a row. Moved events get a new
`MaxEventAge` window. It long-polls until the dead-letter queue is empty, prints what it moved,
and exits 75 when any message could not be moved or removed.
"""

from __future__ import annotations

import argparse
import os

from handler.cli.common import EXIT_OK, EXIT_TEMPFAIL, CliError
from handler.settings import DEAD_LETTER_QUEUE_URL, DELIVERY_QUEUE_URL

EXAMPLES = """examples:
  smc-destination redrive --dlq-url "$DLQ_URL" --queue-url "$QUEUE_URL"
  DEAD_LETTER_QUEUE_URL=… DELIVERY_QUEUE_URL=… smc-destination redrive --limit 100
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `redrive`."""
    parser = commands.add_parser(
        "redrive",
        help="move dead-lettered events back to the delivery queue (queued mode)",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dlq-url", help=f"the dead-letter queue URL ({DEAD_LETTER_QUEUE_URL})")
    parser.add_argument("--queue-url", help=f"the delivery queue URL ({DELIVERY_QUEUE_URL})")
    parser.add_argument(
        "--limit", type=int, default=100_000, help="move at most this many (default: %(default)s)"
    )
    parser.add_argument(
        "--wait-seconds",
        type=int,
        default=5,
        help="long-poll each read this long; the redrive ends after one that finds nothing "
        "(0-20, default: %(default)s)",
    )
    parser.add_argument("--verbose", action="store_true", help="show the client's log lines on stderr")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Move the messages; print how many."""
    import boto3

    from handler.queue import redrive

    dlq_url = args.dlq_url or os.environ.get(DEAD_LETTER_QUEUE_URL, "")
    queue_url = args.queue_url or os.environ.get(DELIVERY_QUEUE_URL, "")
    if not dlq_url or not queue_url:
        raise CliError(
            "both queue URLs are needed",
            "pass --dlq-url and --queue-url (the stack outputs DeadLetterQueueUrl and DeliveryQueueUrl)",
        )
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    if not 0 <= args.wait_seconds <= 20:
        raise CliError("--wait-seconds must be between 0 and 20 (SQS's longest poll)")
    result = redrive(boto3.client("sqs"), dlq_url, queue_url, args.limit, args.wait_seconds)
    print(f"moved {result.moved} message(s) from the dead-letter queue to the delivery queue")
    if result.not_sent:
        print(f"  {result.not_sent} message(s) the delivery queue refused: still in the dead-letter queue")
    if result.not_deleted:
        print(
            f"  {result.not_deleted} message(s) sent but not removed from the dead-letter queue: "
            "they are in both (delivering them twice adds no row); delete them from the dead-letter queue"
        )
    if result.stopped:
        print(f"redrive stopped: {result.stopped}")
    if not result.complete:
        print("  fix: check the queue URLs, AWS credentials and region, then run the same command again")
        return EXIT_TEMPFAIL
    return EXIT_OK
