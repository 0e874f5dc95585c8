"""The DynamoDB tables the function needs, made in moto for the local stack, tests and bench."""

from __future__ import annotations

from typing import Any


def create_table(client: Any, name: str) -> None:
    """A pay-per-request table keyed on the string `id`, like template.yaml's IdempotencyTable
    and StateTable (TTL is the real service's business: moto keeps expired items)."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
