"""The SMC REST API client and its response model."""

from handler.smc.client import SmcClient, SmcResult

__all__ = ["SmcClient", "SmcResult"]
