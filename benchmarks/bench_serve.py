"""`occreid serve`'s answers over HTTP against the library calls they wrap, on galleries of 1k, 10k and 100k
tracks: what the server adds to a search, and that a gallery page costs the same on any gallery size.

    python benchmarks/bench_serve.py            # writes benchmarks/results/bench_serve.md
    python benchmarks/bench_serve.py --quick    # tiny sizes: checks the script runs

A real uvicorn server on 127.0.0.1 in a thread of this process and one keep-alive httpx client; the
galleries are bench_recordings.py's synthetic 1280-d track features (3 cameras, K = 8 fp16 crops a track).
Each repeat times the library call and then the same request over HTTP (interleaved), warm; medians of 30.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_recordings import _machine, synthetic_index  # noqa: E402

QUICK = "--quick" in sys.argv
RESULTS = Path(__file__).parent / "results"
REPEATS = 30 if not QUICK else 3


def serve(index):
    """(base URL, stop) of a uvicorn server for `index` in a thread of this process."""
    import uvicorn

    from occreid.apps.serve.app import ServeState, create_app

    sock = socket.socket()
    # as uvicorn sets on sockets it binds itself; without it a socket handed to uvicorn answers ~45 ms late
    # (Nagle's algorithm against delayed ACKs)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(ServeState(index)), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join()
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


def paired(library, http, repeats: int) -> tuple[float, float]:
    """Median ms of `library(i)` and `http(i)`, timed one after the other in each repeat."""
    library(0), http(0)  # warm
    lib, web = [], []
    for i in range(1, repeats + 1):
        t = time.perf_counter()
        library(i)
        lib.append(time.perf_counter() - t)
        t = time.perf_counter()
        http(i)
        web.append(time.perf_counter() - t)
    return 1000 * float(np.median(lib)), 1000 * float(np.median(web))


def rows_for(n: int, rng: np.random.Generator) -> list[str]:
    import httpx

    from occreid.retrieval import search_by_track

    index = synthetic_index(n, rng)
    _ = index.features
    picks = rng.integers(0, n // 3, size=REPEATS + 1)
    queries = [(f"cam{(i % 3) + 1}", int(p) * 3 + (i % 3) + 1) for i, p in enumerate(picks)]
    url, stop = serve(index)
    rows = []
    try:
        with httpx.Client(base_url=url, timeout=300) as client:

            def get(path: str, params: dict) -> None:
                response = client.get(path, params=params)
                assert response.status_code == 200, response.text

            cases = [
                (
                    "search by track, top 10",
                    lambda i: search_by_track(index, *queries[i], topk=10),
                    lambda i: get("/api/search", {"camera": queries[i][0], "track": queries[i][1]}),
                ),
                (
                    "last gallery page (48 tracks)",
                    lambda i: index.list_tracks(n - 48, 48),
                    lambda i: get("/api/tracks", {"offset": n - 48, "limit": 48}),
                ),
                (
                    "a thumbnail",
                    lambda i: index.thumbnail(*queries[i]),
                    lambda i: get("/api/thumbnail", {"camera": queries[i][0], "track": queries[i][1]}),
                ),
            ]
            for name, library, http in cases:
                lib_ms, web_ms = paired(library, http, REPEATS)
                rows.append(f"| {n:,} | {name} | {lib_ms:.2f} | {web_ms:.2f} |")
    finally:
        stop()
    return rows


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for n in (1_000, 10_000, 100_000) if not QUICK else (300,):
        rows += rows_for(n, rng)
    text = "\n".join(
        [
            "# occreid serve: HTTP answers against the library calls (warm, one process, median of 30)",
            "",
            f"{_machine()}. `python benchmarks/bench_serve.py`; library and HTTP timed one after the other "
            "in each repeat. HTTP: uvicorn on 127.0.0.1 (a thread) and an httpx keep-alive client.",
            "",
            "| tracks | request | library (ms) | HTTP (ms) |",
            "| ---: | --- | ---: | ---: |",
            *rows,
            "",
        ]
    )
    print(text)
    if not QUICK:
        (RESULTS / "bench_serve.md").write_text(text)


if __name__ == "__main__":
    main()
