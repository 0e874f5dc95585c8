"""Build checks run by the Makefile (importable so the benchmark measures with the same code)."""
