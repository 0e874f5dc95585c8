"""Segment → Selligent Marketing Cloud (Marigold Engage) destination for AWS Lambda."""

__version__ = "1.0.0"
PRODUCT = "segment-smc-destination"
