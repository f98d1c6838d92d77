"""Evaluation: IR metrics, system comparison, reports, speed benchmarks."""
