"""Load test of ``unmask serve`` on loopback: N concurrent clients upload the shared clips for a fixed time.

The server runs as its own process (``python -m unmask.cli serve`` on 127.0.0.1 and a free port), so its RSS
is read from ``/proc/<pid>/status`` and the clients do not share its interpreter. Each client thread loops:
upload the next clip of the shared FF++ c40 sample (originals and fakes, in turn), wait for the answer, and
on a 429 wait the ``Retry-After`` it was given (as a well-behaved client does). Bounded: ``--duration`` seconds
per client count and at most ``--max-requests`` requests in all; every address is 127.0.0.1.

Printed: per client count, requests/s (answered 200), latency p50 / p95 / p99 of the 200s, errors (anything but
200 / 429, and connection failures: the goal is 0), 429s, and the server's RSS after warm-up and after the run.

    .venv/bin/python benchmarks/serve_load.py [--clients 1,4,8] [--duration 45] [--checkpoint RUN]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FFPP = Path(os.environ.get("UNMASK_FFPP_SAMPLE", REPO.parent / "shared" / "data" / "ffpp_sample"))


def clips() -> list[Path]:
    found = sorted(FFPP.glob("original_sequences/*/c40/videos/*.mp4")) + sorted(
        FFPP.glob("manipulated_sequences/*/c40/videos/*.mp4"))
    if not found:
        sys.exit(f"serve_load: no clips under {FFPP} (set UNMASK_FFPP_SAMPLE)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "unmask.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--frames", str(args.frames), "--heatmap-frames", str(args.heatmap_frames), "--workers", str(args.workers),
           "--queue", str(args.queue), "--log-level", "warning"]
    cmd += [a for c in args.checkpoint for a in ("--checkpoint", c)] if args.checkpoint else ["--untrained"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < 180:
        if proc.poll() is not None:
            sys.exit(f"serve_load: the server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit("serve_load: the server did not come up in 180 s")


def run_clients(url: str, n: int, duration: float, files: list[Path], budget: list[int]) -> dict:
    import httpx

    lock = threading.Lock()
    lat: list[float] = []
    counts = {"ok": 0, "429": 0, "errors": 0}
    first_errors: list[str] = []
    nxt = [0]
    end = time.monotonic() + duration

    def client(k: int) -> None:
        with httpx.Client(timeout=300) as c:
            while time.monotonic() < end:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                    path = files[nxt[0] % len(files)]
                    nxt[0] += 1
                data = path.read_bytes()
                t0 = time.perf_counter()
                try:
                    r = c.post(url + "/v1/detect", files={"file": (path.name, data, "video/mp4")})
                    code, retry = r.status_code, r.headers.get("retry-after")
                    why = r.text[:200]
                except httpx.HTTPError as exc:
                    code, retry, why = -1, None, f"{exc.__class__.__name__}: {exc}"
                dt = time.perf_counter() - t0
                with lock:
                    if code == 200:
                        counts["ok"] += 1
                        lat.append(dt)
                    elif code == 429:
                        counts["429"] += 1
                    else:
                        counts["errors"] += 1
                        if len(first_errors) < 3:
                            first_errors.append(f"{code} {path.name}: {why}")
                if code == 429:
                    time.sleep(min(float(retry or 1), max(end - time.monotonic(), 0)))

    t_start = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t_start
    return {"clients": n, "wall": wall, "lat": lat, **counts, "first_errors": first_errors}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="1,4,8", help="comma-separated client counts, one run each (default 1,4,8)")
    p.add_argument("--duration", type=float, default=45.0, help="seconds per client count (default 45)")
    p.add_argument("--max-requests", type=int, default=400, help="requests in all, at most (default 400)")
    p.add_argument("--checkpoint", action="append", default=[], help="serve this run (default: --untrained Lite0)")
    p.add_argument("--frames", type=int, default=32, help="frames per video (default 32, as detect)")
    p.add_argument("--heatmap-frames", type=int, default=8, help="heat maps per video (default 8, the server's)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--queue", type=int, default=4)
    args = p.parse_args()
    counts = [int(x) for x in args.clients.split(",") if x.strip()]
    files = clips()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args, port)
    budget = [args.max_requests]
    rows = []
    try:
        import httpx

        r = httpx.post(url + "/v1/detect", files={"file": (files[0].name, files[0].read_bytes())}, timeout=300)
        if r.status_code != 200:
            sys.exit(f"serve_load: warm-up request failed: {r.status_code} {r.text[:300]}")
        rss0 = rss_mb(proc.pid)
        print(f"server pid {proc.pid}: RSS after warm-up {rss0:.0f} MB; {len(files)} clips; model "
              f"{r.json()['model']['id']}; {args.frames} frames, {args.heatmap_frames} heat maps per request; "
              f"workers {args.workers}, queue {args.queue}", flush=True)
        for n in counts:
            before = rss_mb(proc.pid)
            res = run_clients(url, n, args.duration, files, budget)
            after = rss_mb(proc.pid)
            rows.append((res, before, after))
            lat = res["lat"]
            print(f"  {n} clients: {res['ok']} ok, {res['429']} x 429, {res['errors']} errors in {res['wall']:.0f} s; "
                  f"p50 {percentile(lat, 0.5):.2f} s; RSS {before:.0f} -> {after:.0f} MB", flush=True)
            for e in res["first_errors"]:
                print(f"    error: {e}", flush=True)
            if budget[0] <= 0:
                print("  (request budget spent)", flush=True)
                break
        health = httpx.get(url + "/v1/health").json()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    print()
    print("| clients | requests/s (200) | p50 s | p95 s | p99 s | 200s | 429s | errors | server RSS before -> after (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for res, before, after in rows:
        lat = res["lat"]
        print(f"| {res['clients']} | {res['ok'] / res['wall']:.2f} | {percentile(lat, .5):.2f} | {percentile(lat, .95):.2f} | "
              f"{percentile(lat, .99):.2f} | {res['ok']} | {res['429']} | {res['errors']} | {before:.0f} -> {after:.0f} |")
    print(f"\nserver counters: {health['queue']}; RSS after warm-up {rss0:.0f} MB, at the end {rows[-1][2]:.0f} MB")
    return 1 if any(res["errors"] for res, _, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
