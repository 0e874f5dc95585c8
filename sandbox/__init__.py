"""A local SMC (Selligent Marketing Cloud) sandbox: a real HTTP server following SMC's v1 REST contract.

Used by the tests, the benchmarks and the local dev stack. See `SmcSandbox` for the Python API and
`routes.py` for the admin HTTP API under `/_sandbox/`; `model.py` documents the
`record_index` convention (0-based over data rows, a header row in the body is not counted).
"""

from .faults import Fault
from .model import SmcError
from .server import SmcSandbox
from .state import RecordedRequest, seed_default

__all__ = ["Fault", "RecordedRequest", "SmcError", "SmcSandbox", "seed_default"]
