"""Speed benchmarks: `reldistill bench` (matmul peak, teacher scoring per dtype, student encoding, search latency)."""
