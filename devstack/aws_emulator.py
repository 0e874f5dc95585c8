"""moto, the AWS emulator of the tests, the local stack and the benchmarks, made to behave as
DynamoDB does where the product relies on it; `python -m devstack.aws_emulator` is moto's server
with that applied (the benchmarks run it as a process of its own).

moto applies a TransactWriteItems item by item and, should one fail, restores a backup of the
table; its threaded server runs requests at once. Two things follow that DynamoDB does not do:
two concurrent transactions can both pass their conditions, and a read can see a write that is
then rolled back; and the backup is a deep copy of the whole table *per item* (100 copies of a
table of hundreds of records per transaction), which held the interpreter for seconds and starved
every other AWS call into time-outs. The order-safety design relies on DynamoDB's guarantee
(transactions serialised, reads see committed items), so here transactions and item reads share
one lock, and a transaction backs each table up once: the same rollback.
"""

from __future__ import annotations

import copy
import functools
import sys
import threading
from typing import Any

_applied = False


def dynamodb_as_aws_runs_it() -> None:
    """Patch moto's DynamoDB backend in this process (once; idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    class OneBackupPerTable:
        """`copy` as moto's transact_write_items sees it: one backup per table."""

        def __init__(self) -> None:
            self.backups: dict[int, Table] = {}

        def deepcopy(self, value: Any, memo: Any = None) -> Any:
            if isinstance(value, Table):
                if id(value) not in self.backups:
                    self.backups[id(value)] = copy.deepcopy(value)
                return self.backups[id(value)]
            return copy.deepcopy(value, memo)

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

    lock = threading.RLock()
    for name in ("transact_write_items", "get_item"):
        original = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def locked(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            with lock:
                if _name != "transact_write_items":
                    return _original(*args, **kwargs)
                # the module's global `copy`, which transact_write_items reads (moto exports no name for it)
                namespace = vars(models)
                namespace["copy"] = OneBackupPerTable()
                try:
                    return _original(*args, **kwargs)
                finally:
                    namespace["copy"] = copy

        setattr(DynamoDBBackend, name, locked)


def main(argv: list[str] | None = None) -> None:
    """moto's server (same flags), patched."""
    from moto.server import main as moto_main

    dynamodb_as_aws_runs_it()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
