#!/usr/bin/env python
"""Load test: N concurrent asyncio/httpx clients on hybrid /search against `reldistill serve` (loopback only).

Bounded in clients, time and requests. Prints errors, p50/p99 latency, throughput and the server's
RSS at start (after warm-up) and end. Exits 1 on any error.

    .venv/bin/python scripts/load_test.py --run runs/demo --clients 8 --duration 60
    .venv/bin/python scripts/load_test.py --url http://127.0.0.1:8000 --pid 1234   # an already running server
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_util import require_loopback, rss_mib, serve  # noqa: E402


def judged_queries(data: str | None) -> list[str]:
    """Test-split queries of the ESCI sample (falls back to a few generic ones)."""
    try:
        from reldistill.config import DataConfig
        from reldistill.data import load_esci

        cfg = DataConfig() if data is None else DataConfig(path=data)
        ex = load_esci(cfg).examples
        return list(dict.fromkeys(ex[ex["split"] == "test"]["query"])) or list(dict.fromkeys(ex["query"]))[:200]
    except Exception:  # noqa: BLE001 - the load test still runs with generic queries
        return ["usb c cable", "running shoes men", "kitchen knife set", "wireless earbuds", "yoga mat"]


async def client(c: httpx.AsyncClient, queries: list[str], stop_at: float, budget: list[int], lat: list[float],
                 errors: list[str], mode: str, k: int, rng: random.Random) -> None:
    while time.perf_counter() < stop_at and budget[0] > 0:
        budget[0] -= 1
        q = rng.choice(queries)
        t = time.perf_counter()
        try:
            r = await c.get("/search", params={"q": q, "k": k, "mode": mode})
            if r.status_code != 200 or not r.json().get("results"):
                errors.append(f"{r.status_code}: {r.text[:120]}")
            else:
                lat.append((time.perf_counter() - t) * 1000)
        except httpx.HTTPError as e:
            errors.append(type(e).__name__)


async def run_load(url: str, pid: int | None, queries: list[str], clients: int, duration: float, max_requests: int,
                   mode: str, k: int, timeout: float, warmup: int) -> dict:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as c:
        for q in queries[:warmup]:  # warm caches and the encoder before measuring memory
            await c.get("/search", params={"q": q, "k": k, "mode": mode})
        rss_start = rss_mib(pid) if pid else None
        lat: list[float] = []
        errors: list[str] = []
        budget = [max_requests]
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, queries, t0 + duration, budget, lat, errors, mode, k, random.Random(i))
                               for i in range(clients)))
        wall = time.perf_counter() - t0
        rss_end = rss_mib(pid) if pid else None
    a = np.asarray(lat) if lat else np.asarray([float("nan")])
    return {"url": url, "mode": mode, "k": k, "clients": clients, "duration_s": round(wall, 1), "requests": len(lat) + len(errors),
            "ok": len(lat), "errors": len(errors), "error_samples": errors[:5],
            "p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "mean_ms": round(float(a.mean()), 1), "throughput_rps": round(len(lat) / wall, 1),
            "rss_start_mib": None if rss_start is None else round(rss_start, 1),
            "rss_end_mib": None if rss_end is None else round(rss_end, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory to serve (starts `reldistill serve` on 127.0.0.1)")
    src.add_argument("--url", help="an already running server on loopback")
    ap.add_argument("--pid", type=int, help="server pid for RSS readings (with --url)")
    ap.add_argument("--data", help="ESCI directory for the query pool (default: the sample)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--mode", default="hybrid", choices=["bm25", "dense", "hybrid", "rerank"])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=30.0, help="per-request timeout (s)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--json", help="write the summary to this file too")
    a = ap.parse_args()
    if not 1 <= a.clients <= 256 or not 0 < a.duration <= 600:
        sys.exit("error: --clients must be in [1, 256] and --duration in (0, 600] — the test is bounded.")
    queries = judged_queries(a.data)

    def go(url: str, pid: int | None) -> dict:
        return asyncio.run(run_load(url, pid, queries, a.clients, a.duration, a.max_requests, a.mode, a.k, a.timeout, a.warmup))

    if a.run:
        with serve(a.run) as (url, pid):
            res = go(url, pid)
    else:
        res = go(require_loopback(a.url), a.pid)
    growth = (res["rss_end_mib"] - res["rss_start_mib"]) if res["rss_start_mib"] else None
    print(f"load test: {res['clients']} clients × {res['duration_s']} s on {res['mode']} /search (k={res['k']}), {len(queries)} distinct queries")
    print(f"  requests {res['requests']:,}  ok {res['ok']:,}  errors {res['errors']}")
    print(f"  latency p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  mean {res['mean_ms']} ms")
    print(f"  throughput {res['throughput_rps']} req/s")
    if growth is not None:
        print(f"  server RSS {res['rss_start_mib']} MiB → {res['rss_end_mib']} MiB ({growth:+.1f} MiB)")
    if res["errors"]:
        print(f"  error samples: {res['error_samples']}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    sys.exit(1 if res["errors"] else 0)


if __name__ == "__main__":
    main()
