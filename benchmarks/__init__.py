"""robodistill's benchmarks: ``python -m benchmarks [--quick] [NAME ...]``; results in ``benchmarks/results``."""
