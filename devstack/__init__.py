"""The local stack: the destination running on a laptop, with no AWS or SMC account.

`python -m devstack` (`make run`) starts on loopback an AWS emulator (moto: the secret and the
idempotency table), the SMC sandbox (`sandbox`, seeded), and a small HTTP front that turns
each request into the API Gateway HTTP API v2 event and calls the real `handler.app.lambda_handler`
in-process. `python -m devstack demo` (`make demo`) sends the `events/` cases through it.

Modules: `examples` (the example secret and settings), `state` (ports, lock and state file),
`front` (HTTP → v2 event → handler → HTTP), `stack` (start, seed, serve, stop), `demo`, and the
built artifact run as Lambda runs it: `artifact` (the awslambdaric process, `make lambda-test`)
behind `runtime_api` (the Lambda Runtime API).
"""

from __future__ import annotations

HOST = "127.0.0.1"
DEFAULT_FRONT_PORT = 3000
DEFAULT_SANDBOX_PORT = 8899
DEFAULT_MOTO_PORT = 5005
DEFAULT_STATE_DIR = ".local-stack"
ROUTE = "/segment"
