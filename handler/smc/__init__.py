"""The SMC REST API client and how its answers are read."""

from handler.smc.answers import RowVerdicts, read_answer
from handler.smc.client import SmcClient

__all__ = ["RowVerdicts", "SmcClient", "read_answer"]
