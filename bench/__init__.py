"""Benchmarks: memory, latency, ingest, retrieval and answer quality, the free tier.

Not shipped with the product (the wheel holds `assistant` only). Run each from the repository
root as a module, e.g. `python -m bench.quality --quick`; each script's docstring says what it
measures and how. Results are appended to docs/BENCHMARKS.md. Stdlib only here: the workers that
run in other interpreters (the PyTorch reference venv) import this package too.
"""
