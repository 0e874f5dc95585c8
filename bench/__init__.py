"""Benchmarks: the product against baselines measured in the same run (`make bench`).

`bench.run` starts the SMC sandbox and moto as subprocesses, then runs each measurement in its own
fresh Python process (`bench.worker`, `bench.coldstart`, `bench.memory`) so the measured code never
shares an interpreter (or its GIL) with the servers. Results: a table on stdout and
`bench/results.json`. See docs/performance.md.
"""
