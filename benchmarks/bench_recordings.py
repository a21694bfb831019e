"""Recordings to a gallery of tracks, and searching it: ingest throughput, query latency and index size.

    python benchmarks/bench_recordings.py ingest [--checkpoint CKPT]   # decode fps, crops/s end to end
    python benchmarks/bench_recordings.py query      # 1k / 10k / 100k tracks, torch and faiss
    python benchmarks/bench_recordings.py size       # a 100k-track K=8 index on disk
    python benchmarks/bench_recordings.py memory     # ingest peak memory, a short vs a 4x longer video
    python benchmarks/bench_recordings.py all --quick    # tiny sizes: checks the script runs

Each part prints a markdown table and writes benchmarks/results/bench_recordings_<part>.md (not with --quick).

- ingest: a synthetic 3-camera recording at 640 x 360 (`occreid synth-video`, 20 people, 300 frames a camera);
  "decode" times PyAV decoding every frame of each video (and converting each to RGB), "ingest" the whole
  `occreid index build --tracks` path (read tracks, decode once, cut K = 8 crops a track, embed, pool) with
  the demo's CNN checkpoint (default runs/demo/baseline/last.pt, MobileNetV2, 1280-d), "embed"
  the model alone on those crops. The process is limited to the threads torch is given (OMP_NUM_THREADS).
- query: galleries of synthetic 1280-d features with identity structure (3 entries per identity over 3
  cameras, K = 8 crops each, drawn near a 64-d subspace as trained features are), searched by
  track (own camera excluded) with torch (exact), faiss flat (exact) and faiss HNSW (approximate; recall@10
  against exact); warm queries in one process, median of 50. By image adds embedding one crop with the CNN.
- memory: one camera with the same 6 people in a 100-frame and a 400-frame video (the same tracks, each
  4 x longer): the ingest's peak resident memory above what was resident before (`PeakMemory`, Linux).
- size: an index of 100,000 tracks x 8 crops of 1280-d with JPEG crops of the size the ingest run produced,
  as built by default and with `--crop-features`:
  bytes on disk by part, and the time `load_index` + the first search take in a fresh process (torch
  already imported).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

QUICK = "--quick" in sys.argv
RESULTS = Path(__file__).parent / "results"
DEMO_CNN = Path("runs/demo/baseline/last.pt")  # the CNN of `make demo`; --checkpoint for another
DIM = 1280
K = 8


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def _save(part: str, text: str) -> None:
    print(text)
    if not QUICK:
        (RESULTS / f"bench_recordings_{part}.md").write_text(text)


def _machine() -> str:
    import os
    import platform

    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[0]:.1f} at the end), torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads"
    )


class Clock:
    """Wall and process CPU seconds of `with` blocks, summed. On a shared machine the CPU seconds are what
    the work costs on its own: with one thread each, they estimate an idle core's wall time."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c

    def rate(self, count: float, unit: str) -> str:
        return f"{count / self.wall:,.0f} {unit}/s | {count / self.cpu:,.0f} {unit}/s"


def _decode_all(video: Path) -> int:
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def bench_ingest(work: Path) -> None:
    from occreid.data.recordings import SynthVideoSettings, synth_video, video_frames
    from occreid.inference import FeatureExtractor
    from occreid.retrieval import ingest, open_recording

    settings = SynthVideoSettings(cameras=3, people=20 if not QUICK else 4, frames=300 if not QUICK else 20)
    synth_video(work / "rec", settings)
    checkpoint = Path(_arg("--checkpoint", str(DEMO_CNN)))
    runtime = _arg("--runtime", "torch")  # torch (the reference) or onnx (ONNX Runtime, exported in memory)
    extractor = FeatureExtractor.from_checkpoint(checkpoint, device="cpu", progress=False, runtime=runtime)
    decode, convert, run, embed = Clock(), Clock(), Clock(), Clock()
    decoded, crops, parts = 0, 0, []
    for c in range(1, settings.cameras + 1):
        cam = work / "rec" / f"cam{c}"
        with decode:
            n = _decode_all(cam / "video.mp4")
        with convert:
            decoded += sum(1 for _ in video_frames(cam / "video.mp4", set(range(1, n + 1))))
        with run:
            part, report = ingest(
                f"cam{c}", open_recording(cam / "gt/gt.txt", video=cam / "video.mp4"), extractor
            )
        crops += report.crops
        parts.append(part)
    jpeg_bytes = sum(int(p.jpeg_start[-1]) for p in parts) / crops
    sample = [Image.open(io.BytesIO(b)) for p in parts for b in p.crops(p.camera_names[0], int(p.track[0]))]
    sample = (sample * (256 // max(1, len(sample)) + 1))[:256]
    with embed:
        extractor(sample)
    rows = [
        f"| frames decoded (PyAV, H.264) | {decode.rate(decoded, 'frames')} |",
        f"| frames decoded + converted to RGB arrays | {convert.rate(decoded, 'frames')} |",
        f"| ingest end to end ({crops} crops from {decoded} frames) | {run.rate(crops, 'crops')} |",
        f"| embedding alone ({checkpoint.parent.name}, 256 crops) | {embed.rate(len(sample), 'crops')} |",
    ]
    text = "\n".join(
        [
            "# Ingest throughput: a synthetic 3-camera recording into a gallery of tracks",
            "",
            f"{settings.cameras} cameras x {settings.frames} frames at {settings.width}x{settings.height}, "
            f"{settings.people} people, K = {K}; model {checkpoint} on {runtime}; {_machine()}. "
            "Rates per wall second and per CPU second of this process (what it costs alone). JPEG crops "
            f"(128 px tall) average {jpeg_bytes:,.0f} bytes.",
            "",
            "| what | per wall second | per CPU second |",
            "| --- | ---: | ---: |",
            *rows,
            "",
        ]
    )
    _save("ingest" if runtime == "torch" else f"ingest_{runtime}", text)
    (work / "jpeg_bytes.json").write_text(json.dumps(jpeg_bytes))


LATENT = 64  # intrinsic dimension of the synthetic features


def synthetic_index(n: int, rng: np.random.Generator, jpeg_bytes: int = 1, crop_features: bool = True):
    """n tracks over 3 cameras, 3 entries per identity (one per camera), K crops each. Trained features lie
    near a low-dimensional set, so crops are drawn in a LATENT-d space (the identity's centre + noise, the
    entry's offset + smaller noise per crop), mapped to DIM by a fixed random matrix, plus a little noise.
    `crop_features`: keep the crops' features (`index build --crop-features`) or only the entries'."""
    from occreid.retrieval import TrackIndex, pool

    ids = (n + 2) // 3
    centres = rng.standard_normal((ids, LATENT), dtype=np.float32)
    lift = rng.standard_normal((LATENT, DIM), dtype=np.float32) / np.sqrt(LATENT)
    owner = np.arange(n) // 3
    crops = np.empty((n * K, DIM), np.float16)
    for a in range(0, n, 4096):
        b = min(n, a + 4096)
        entry = centres[owner[a:b]] + 0.6 * rng.standard_normal((b - a, LATENT), dtype=np.float32)
        latent = np.repeat(entry, K, axis=0) + 0.3 * rng.standard_normal(
            ((b - a) * K, LATENT), dtype=np.float32
        )
        block = latent @ lift + 0.05 * rng.standard_normal(((b - a) * K, DIM), dtype=np.float32)
        crops[a * K : b * K] = block / np.linalg.norm(block, axis=1, keepdims=True)
    crop_start = np.arange(n + 1, dtype=np.int64) * K
    blob = rng.integers(0, 256, size=n * K * jpeg_bytes, dtype=np.uint8)
    return TrackIndex(
        cameras={f"cam{c}": {"fps": 10.0} for c in (1, 2, 3)},
        camera_code=(np.arange(n) % 3).astype(np.int32),
        track=np.arange(1, n + 1, dtype=np.int64),
        first_frame=np.ones(n, np.int64),
        last_frame=np.full(n, 50, np.int64),
        seconds=np.tile([0.0, 4.9], (n, 1)),
        thumb=crop_start[:-1].copy(),
        entry_features=pool(crops, crop_start).astype(np.float16),
        crop_start=crop_start,
        crop_features=crops if crop_features else crops[:0],
        crop_frame=np.ones(n * K, np.int64),
        crop_box=np.zeros((n * K, 4), np.float32),
        jpeg_start=np.arange(n * K + 1, dtype=np.int64) * jpeg_bytes,
        jpegs=blob,
    )


def _median_ms(fn, repeats: int) -> str:
    """Median wall and CPU milliseconds of fn(1..repeats), after a warm call fn(0): "wall / cpu"."""
    fn(0)  # warm: caches built
    wall, cpu = [], []
    for i in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn(i + 1)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return f"{1000 * float(np.median(wall)):.2f} / {1000 * float(np.median(cpu)):.2f}"


def _recall(index, queries, exact, backend: str) -> float:
    from occreid.retrieval import search_by_track

    hits = []
    for q in queries:
        got = {
            (r["camera"], r["track"]) for r in search_by_track(index, *q, topk=10, backend=backend)["results"]
        }
        hits.append(len(got & {(r["camera"], r["track"]) for r in exact[q]}) / 10)
    return float(np.mean(hits))


def _query_rows(index, queries, extractor, crop, repeats: int) -> list[str]:
    """Table rows of one gallery: every backend (and max re-scoring with torch)."""
    from occreid.retrieval import search_by_image, search_by_track

    exact = {q: search_by_track(index, *q, topk=10)["results"] for q in queries}
    rows = []
    for backend, rescore in (("torch", "mean"), ("torch", "max"), ("faiss", "mean"), ("faiss-hnsw", "mean")):

        def by_track(i: int, backend: str = backend, rescore: str = rescore) -> None:
            search_by_track(index, *queries[i], topk=10, backend=backend, rescore=rescore)

        def by_image(i: int, backend: str = backend) -> None:
            search_by_image(index, crop, extractor, backend=backend)

        ms = _median_ms(by_track, repeats)
        recall = f"{_recall(index, queries, exact, backend):.3f}" if backend == "faiss-hnsw" else ""
        image_ms = ""
        if extractor is not None and rescore == "mean":
            image_ms = _median_ms(by_image, min(repeats, 20))
        rows.append(f"| {len(index):,} | {backend} | {rescore} | {ms} | {image_ms} | {recall} |")
    return rows


def bench_query() -> None:
    from occreid.inference import FeatureExtractor
    from occreid.retrieval.search import HNSW_EF_SEARCH as EF

    rng = np.random.default_rng(0)
    sizes = (1_000, 10_000, 100_000) if not QUICK else (300, 1_000)
    repeats = 50 if not QUICK else 3
    extractor = None
    if DEMO_CNN.is_file():
        extractor = FeatureExtractor.from_checkpoint(DEMO_CNN, device="cpu", progress=False)
    crop = Image.fromarray(rng.integers(0, 255, (256, 128, 3), dtype=np.uint8))
    rows = []
    for n in sizes:
        index = synthetic_index(n, rng)
        _ = index.features
        picks = rng.integers(0, n // 3, size=repeats + 1)
        queries = [(f"cam{(i % 3) + 1}", int(p) * 3 + (i % 3) + 1) for i, p in enumerate(picks)]
        rows += _query_rows(index, queries, extractor, crop, repeats)
    text = "\n".join(
        [
            "# Query latency on a gallery of tracks (warm, one process, median)",
            "",
            f"Synthetic {DIM}-d track features (3 cameras, K = {K} fp16 crops a track, {LATENT}-d inside); "
            f"{_machine()}. By track: search only, the query's camera left out. By image: embedding one crop "
            f"with the demo CNN ({DEMO_CNN.parent.name}) + search. HNSW: M = 32, efSearch = {EF}; recall@10 "
            "against exact search. Milliseconds: wall (the shared machine) / CPU time of this process.",
            "",
            "| tracks | backend | rescore | by track (ms) | by image (ms) | recall@10 |",
            "| ---: | --- | --- | ---: | ---: | ---: |",
            *rows,
            "",
        ]
    )
    _save("query", text)


def bench_size(work: Path) -> None:
    n = 100_000 if not QUICK else 1_000
    jpeg_file = work / "jpeg_bytes.json"
    jpeg_bytes = int(json.loads(jpeg_file.read_text())) if jpeg_file.is_file() else 2070
    source = "the ingest run's average" if jpeg_file.is_file() else "an earlier ingest run's average"
    lines = [
        f"# Size of a {n:,}-track index (K = {K}, {DIM}-d) and the time to load it",
        "",
        f"JPEG crops of {jpeg_bytes:,} bytes ({source}); {_machine()}.",
        "",
        "| index | entry features (fp16) | crop features (fp16) | crop JPEGs | other | **file on disk** "
        "| load | load + first search by track |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, keep in (("default", False), ("`--crop-features`", True)):
        lines.append(_size_row(work, label, synthetic_index(n, np.random.default_rng(1), jpeg_bytes, keep)))
    lines += [
        "",
        "Load and first search: wall seconds (CPU seconds) in a fresh process with torch imported.",
        "",
    ]
    _save("size", "\n".join(lines))


def _size_row(work: Path, label: str, index) -> str:
    """One row of the size table: the index's parts, its file size, and the times to load and search it."""
    path = work / "big.npz"
    index.save(path)
    parts = [index.entry_features.nbytes, index.crop_features.nbytes, index.jpegs.nbytes]
    other = sum(
        getattr(index, name).nbytes
        for name in ("camera_code", "track", "first_frame", "last_frame", "seconds", "thumb", "crop_start",
                     "crop_frame", "crop_box", "jpeg_start")
    )  # fmt: skip
    del index
    code = (
        "import time, torch; from occreid.retrieval import load_index, search_by_track; "
        "w, c = time.perf_counter(), time.process_time(); "
        f"ix = load_index({str(path)!r}); "
        "w1, c1 = time.perf_counter(), time.process_time(); search_by_track(ix, 'cam1', 1); "
        "print(w1 - w, c1 - c, time.perf_counter() - w, time.process_time() - c)"
    )
    out = [float(v) for v in subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()]  # fmt: skip
    size = path.stat().st_size
    path.unlink()
    cells = " | ".join(f"{b / 1e9:.3f} GB" for b in [*parts, other])
    return (
        f"| {label} | {cells} | **{size / 1e9:.3f} GB ({size / 2**30:.3f} GiB)** "
        f"| {out[0]:.1f} s ({out[1]:.1f}) | {out[2]:.1f} s ({out[3]:.1f}) |"
    )


def bench_memory(work: Path) -> None:
    from bench_evaluation import PeakMemory

    from occreid.data.recordings import SynthVideoSettings, synth_video
    from occreid.inference import FeatureExtractor
    from occreid.retrieval import ingest, open_recording

    checkpoint = Path(_arg("--checkpoint", str(DEMO_CNN)))
    extractor = FeatureExtractor.from_checkpoint(checkpoint, device="cpu", progress=False)
    rows = []
    for frames in (100, 400) if not QUICK else (20, 80):
        folder = work / f"mem{frames}"
        synth_video(folder, SynthVideoSettings(cameras=2, people=6, frames=frames))
        cam = folder / "cam1"
        ingest("cam1", open_recording(cam / "gt/gt.txt", video=cam / "video.mp4"), extractor)  # warm
        with PeakMemory() as peak:
            part, report = ingest(
                "cam1", open_recording(cam / "gt/gt.txt", video=cam / "video.mp4"), extractor
            )
        rows.append(f"| {frames} | {report.tracks} | {report.crops} | {peak.extra_mb:.0f} |")
    text = "\n".join(
        [
            "# Ingest memory against the video's length",
            "",
            f"One camera at 640x360 (H.264), the same 6 people; model {checkpoint}; {_machine()}.",
            "",
            "| frames | tracks | crops | peak memory above the start (MB) |",
            "| ---: | ---: | ---: | ---: |",
            *rows,
            "",
        ]
    )
    _save("memory", text)


def main() -> None:
    skip = {_arg("--checkpoint", ""), _arg("--runtime", "")}
    parts = [a for a in sys.argv[1:] if not a.startswith("--") and a not in skip] or ["all"]
    if "all" in parts:
        parts = ["ingest", "query", "size", "memory"]
    with tempfile.TemporaryDirectory(prefix="bench_recordings_") as tmp:
        work = Path(tmp)
        for part in parts:
            {
                "ingest": bench_ingest,
                "query": lambda _: bench_query(),
                "size": bench_size,
                "memory": bench_memory,
            }[part](work)


if __name__ == "__main__":
    main()
