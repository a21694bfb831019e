"""`occreid serve`: the JSON API's answers and errors, the safety rules (uploads, decompression bombs, path
traversal encoded or not, no tracebacks) and the command line's checks, on a small real track index."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


@contextmanager
def live_server(state):
    """The app of `state` on a real uvicorn server on a free 127.0.0.1 port; yields its base URL."""
    import uvicorn

    from occreid.apps.serve.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
    )  # as uvicorn's own sockets (else ~45 ms a request)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="info", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def png_bytes(size=(48, 96), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid PNG header declaring width x height pixels around a tiny IDAT: opening it costs nothing, and
    decoding it would need gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


_SERVED: list = []  # the one small index of this process: both serve test files import this fixture


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """(index path, index, extractor, explainer) of a small real track index (synth-video + index build),
    made once per process."""
    from recordings_fixtures import make_track_index

    from occreid.cli.serve import query_model
    from occreid.retrieval import load_index

    if not _SERVED:
        path = make_track_index(tmp_path_factory.mktemp("serve"))
        index = load_index(path)
        extractor, explainer = query_model(index, path, None)
        assert extractor is not None, "the fixture's index records its checkpoint: image search is on"
        _SERVED.append((path, index, extractor, explainer))
    return _SERVED[0]


@pytest.fixture(scope="module")
def run_folders(tmp_path_factory):
    """A run with a report (report.md, a picture, raw HTML that must not run) and one with only its files."""
    import json

    root = tmp_path_factory.mktemp("runs")
    reported = root / "reported"
    (reported / "report").mkdir(parents=True)
    (reported / "report" / "report.md").write_text(
        "# Run report\n\n| metric | value |\n|---|---|\n| mAP | 0.5 |\n\n![curves](curves.png)\n\n"
        "<script>alert(1)</script>\n\n[a link](javascript:alert(1))\n"
    )
    (reported / "report" / "curves.png").write_bytes(png_bytes())
    (root / "secret.txt").write_text("not to be served")
    plain = root / "plain"
    plain.mkdir()
    lines = [{"kind": "train", "epoch": 1, "step": s, "loss": 5.0 / s} for s in range(1, 6)]
    lines += [{"kind": "eval", "epoch": e, "step": 5, "mAP": 0.1 * e, "rank1": 0.2 * e} for e in (1, 2)]
    (plain / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kind": "tr')
    (plain / "eval.json").write_text(json.dumps({"mAP": 0.2, "rank1": 0.4, "settings": {"flip": False}}))
    demo = root / "demo"  # `occreid demo`'s folder: report.md at the top, beside its pictures and runs
    demo.mkdir()
    (demo / "report.md").write_text("# Demo\n\n![maps](response_maps.png)\n")
    (demo / "response_maps.png").write_bytes(png_bytes(color=(0, 0, 200)))
    (demo / "last.pt").write_bytes(b"weights")
    return [reported, plain, demo]


@pytest.fixture(scope="module")
def client(served, run_folders):
    from starlette.testclient import TestClient

    from occreid.apps.serve.app import ServeState, create_app

    _, index, extractor, explainer = served
    state = ServeState(index, extractor, run_folders, upload_limit_mb=1.0, explainer=explainer)
    with TestClient(create_app(state), raise_server_exceptions=False) as test_client:
        yield test_client


def first_tracks(index, count=400):
    total, rows = index.list_tracks(0, count)
    return total, rows


def test_track_search_matches_the_library_and_leaves_out_the_query_camera(served, client):
    from occreid.retrieval import search_by_track

    _, index, _, _ = served
    _, rows = first_tracks(index)
    query = rows[0]
    response = client.get(
        "/api/search", params={"camera": query["camera"], "track": query["track"], "topk": 5}
    )
    assert response.status_code == 200
    body = response.json()
    assert body == search_by_track(index, query["camera"], query["track"], topk=5)
    assert body["query"] == {"camera": query["camera"], "track": query["track"]}
    assert body["results"] and all(r["camera"] != query["camera"] for r in body["results"])
    distances = [r["distance"] for r in body["results"]]
    assert distances == sorted(distances)
    for result in body["results"]:
        assert {"camera", "track", "distance", "first_frame", "last_frame", "seconds"} <= set(result)
    same = client.get(
        "/api/search",
        params={
            "camera": query["camera"],
            "track": query["track"],
            "topk": 50,
            "include_same_camera": "true",
        },
    ).json()
    assert any(r["camera"] == query["camera"] for r in same["results"])


def test_image_search_embeds_the_upload_like_the_library(served, client):
    from occreid.retrieval import search_by_image

    _, index, extractor, _ = served
    crop = client.get("/api/crop", params={**_track_params(index), "i": 0})
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    response = client.post("/api/search?topk=4", files={"image": ("q.jpg", crop.content, "image/jpeg")})
    assert response.status_code == 200, response.text
    expected = search_by_image(index, Image.open(io.BytesIO(crop.content)).convert("RGB"), extractor, topk=4)
    assert [(r["camera"], r["track"]) for r in response.json()["results"]] == [
        (r["camera"], r["track"]) for r in expected["results"]
    ]
    assert len(response.json()["results"]) == 4


def test_the_servers_backend_is_the_one_searched_with(served):
    pytest.importorskip("faiss")
    from starlette.testclient import TestClient

    from occreid.apps.serve.app import ServeState, create_app
    from occreid.retrieval import search_by_track

    _, index, _, _ = served
    params = _track_params(index)
    with TestClient(create_app(ServeState(index, backend="faiss-hnsw"))) as hnsw:
        answer = hnsw.get("/api/search", params={**params, "topk": 3}).json()
    expected = search_by_track(index, params["camera"], params["track"], topk=3, backend="faiss-hnsw")
    assert answer == expected
    with TestClient(create_app(ServeState(index, backend="no-such-backend"))) as wrong:
        refused = wrong.get("/api/search", params=params)
    assert (
        refused.status_code == 400 and "no-such-backend" in refused.json()["error"]
    )  # it reached the search


def _track_params(index) -> dict:
    _, rows = index.list_tracks(0, 1)
    return {"camera": rows[0]["camera"], "track": rows[0]["track"]}


def test_gallery_pages_thumbnails_and_crops(served, client):
    _, index, _, _ = served
    total, rows = index.list_tracks(0, 10_000)
    assert total == len(rows) > 3
    page = client.get("/api/tracks", params={"offset": 1, "limit": 2}).json()
    assert page == {"total": total, "offset": 1, "tracks": rows[1:3]}
    assert client.get("/api/tracks", params={"offset": total}).json()["tracks"] == []
    params = _track_params(index)
    thumbnail = client.get("/api/thumbnail", params=params)
    assert thumbnail.content == index.thumbnail(params["camera"], params["track"])
    assert Image.open(io.BytesIO(thumbnail.content)).format == "JPEG"
    crops = client.get("/api/crops", params=params).json()["crops"]
    expected = index.crops(params["camera"], params["track"])
    assert len(crops) == len(expected) >= 1
    assert [client.get(url).content for url in crops] == expected
    info = client.get("/api/info").json()
    assert info["tracks"] == total and info["image_search"] is True
    assert [r["url"] for r in info["runs"]] == ["/runs/0/report/", "/runs/1/report/", "/runs/2/report/"]


@pytest.mark.parametrize(
    ("method", "url", "status", "says"),
    [
        ("get", "/api/search?camera=nocam&track=1", 404, "nocam"),
        ("get", "/api/search?camera=cam1&track=999999", 404, "999999"),
        ("get", "/api/search?camera=cam1&track=one", 400, "track"),
        ("get", "/api/search?camera=cam1", 400, "track"),
        ("get", "/api/search?camera=cam1&track=1&topk=0", 400, "topk"),
        ("get", "/api/search?camera=cam1&track=1&rescore=median", 400, "median"),
        ("get", "/api/thumbnail?camera=cam1&track=999999", 404, "999999"),
        ("get", "/api/crop?camera=cam1&track=1&i=999", 404, "crop"),
        ("get", "/api/tracks?limit=100000", 400, "limit"),
        ("get", "/api/nothing", 404, "no such page"),
        ("get", "/docs", 404, "no such page"),
        ("get", "/openapi.json", 404, "no such page"),
        ("get", "/runs/7/report/", 404, "no run 7"),
        ("post", "/api/search", 400, "multipart"),
        ("post", "/api/explain", 400, "multipart"),
        ("get", "/api/explain?camera=cam1&track=999999", 404, "999999"),
    ],
)
def test_bad_requests_get_one_json_line(client, method, url, status, says):
    response = getattr(client, method)(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert says in error and "\n" not in error and "Traceback" not in error


@pytest.mark.parametrize(
    ("payload", "status", "says"),
    [
        (b"this is not an image", 400, "not a readable image"),
        (b"", 400, "empty"),
        (png_bytes()[:60], 400, "not a readable image"),  # truncated
        (bomb_png(), 400, "decompression bomb"),
        (b"\xff" * (1024 * 1024 + 1), 413, "1 MB limit"),  # over the test server's 1 MB limit
        (b"\xff" * (3 * 1024 * 1024), 413, "1 MB limit"),  # refused by its Content-Length
    ],
)
def test_bad_uploads_are_refused_with_one_line(client, payload, status, says):
    response = client.post("/api/search", files={"image": ("q.png", payload, "image/png")})
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_an_upload_without_the_image_field_is_refused(client):
    response = client.post("/api/search", files={"picture": ("q.png", png_bytes(), "image/png")})
    assert response.status_code == 400 and "field 'image'" in response.json()["error"]


def test_run_pages_show_the_report_or_the_runs_own_curves(client):
    reported = client.get("/runs/0/report/")
    assert reported.status_code == 200 and "text/html" in reported.headers["content-type"]
    assert "<h1>Run report</h1>" in reported.text and "<table>" in reported.text
    assert '<img src="curves.png"' in reported.text
    assert "<script>" not in reported.text  # raw HTML in a report is shown as text, never run
    assert 'href="javascript:' not in reported.text
    assert client.get("/runs/0/report/curves.png").content == png_bytes()
    plain = client.get("/runs/1/report/").text
    assert plain.count("<svg") == 3  # loss, mAP and rank1 curves
    assert "<td>mAP</td><td>0.2</td>" in plain and "<td>rank1</td><td>0.4</td>" in plain
    assert client.get("/runs/1").url.path == "/runs/1/report/"
    demo = client.get("/runs/2/report/").text
    assert "<h1>Demo</h1>" in demo and '<img src="response_maps.png"' in demo
    assert client.get("/runs/2/report/response_maps.png").content == png_bytes(color=(0, 0, 200))
    for not_a_picture in ("/runs/2/report/last.pt", "/runs/2/report/report.md", "/runs/0/report/report.md"):
        assert client.get(not_a_picture).status_code == 404  # only the report's pictures are served


def test_every_answer_forbids_other_origins_scripts_and_framing(client):
    for url in ("/", "/static/page.js", "/api/info", "/runs/0/report/"):
        headers = client.get(url).headers
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src" not in policy or "unsafe" not in policy.split("script-src")[1].split(";")[0]
        assert headers["x-content-type-options"] == "nosniff"


@pytest.fixture(scope="module")
def live_url(served, run_folders):
    from occreid.apps.serve.app import ServeState

    _, index, extractor, _ = served
    with live_server(ServeState(index, extractor, run_folders, upload_limit_mb=1.0)) as url:
        yield url


@pytest.mark.parametrize(
    "path",
    [
        "../../secret.txt",
        "..%2f..%2fsecret.txt",
        "%2e%2e/%2e%2e/secret.txt",
        "%2e%2e%2f%2e%2e%2fsecret.txt",
        "..%5c..%5csecret.txt",
        "..\\..\\secret.txt",
        "%252e%252e/secret.txt",
        "/etc/passwd",
        "%2fetc%2fpasswd",
    ],
)
def test_path_traversal_is_refused_on_the_wire(live_url, path):
    """Raw request lines (no client normalises the dots away) to a real uvicorn server."""
    status, body = raw_get(live_url, f"/runs/0/report/{path}")
    assert status in (400, 404), body
    assert b"not to be served" not in body and b"root:" not in body
    assert body.startswith(b'{"error":')
    assert (
        raw_get(live_url, "/runs/0/report/curves.png")[0] == 200
    )  # the same route serves the report's files


@pytest.mark.parametrize(
    "target", ["/static/..%2f..%2fapp.py", "/static/../app.py", "/static/%2e%2e%2fsettings.py"]
)
def test_the_pages_own_files_are_a_fixed_list(live_url, target):
    status, body = raw_get(live_url, target)
    assert status == 404 and body.startswith(b'{"error":') and b"import" not in body


def test_a_chunked_upload_over_the_limit_is_cut_off_with_413(live_url):
    """No Content-Length to refuse it by: the body is counted as it streams in (1 MB limit here), and the
    answer comes while the client is still sending (a body that never ends)."""
    host, port = live_url.removeprefix("http://").split(":")
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    chunks = [head] + [b"\0" * 65536] * 40  # 2.5 MB
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(
            f"POST /api/search HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nConnection: close\r\n\r\n".encode()
        )

        def send_body() -> None:
            try:
                for chunk in chunks:  # and never the last, empty chunk: the body never ends
                    conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                pass  # the server stops reading once it has answered

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass  # the server closed a connection whose body it did not read to the end
        sender.join(timeout=20)
    head_line, _, body = data.partition(b"\r\n\r\n")
    assert head_line.split(b" ")[1] == b"413", data[:300]
    assert b"1 MB limit" in body


def test_a_local_server_answers_only_to_its_own_names(served):
    """A page on another site that points its DNS name at 127.0.0.1 (DNS rebinding) is refused."""
    from occreid.apps.serve import settings
    from occreid.apps.serve.app import ServeState

    _, index, _, _ = served
    with live_server(ServeState(index, hosts=settings.LOOPBACK_HOSTS)) as url:
        assert raw_get(url, "/api/info")[0] == 200  # Host: 127.0.0.1
        assert raw_get(url, "/api/info", host_header="localhost:8765")[0] == 200
        status, body = raw_get(url, "/api/info", host_header="evil.example:8765")
    assert status == 400 and b"evil.example" in body


def raw_get(base: str, target: str, host_header: str | None = None) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        header = f"Host: {host_header or host}\r\nConnection: close"
        conn.sendall(f"GET {target} HTTP/1.1\r\n{header}\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_explain_shows_a_cnns_response_map_of_a_track_and_of_an_upload(served, client):
    import base64

    _, index, _, explainer = served
    assert explainer.kind == "cnn"  # the fixture's model is a ResNet-18 baseline
    params = _track_params(index)
    body = client.get("/api/explain", params=params).json()
    assert body["kind"] == "cnn" and body["map"].startswith("data:image/png;base64,")
    picture = Image.open(io.BytesIO(base64.b64decode(body["map"].split(",", 1)[1])))
    assert picture.size == (32, 64)  # the model's input size (W, H)
    thumbnail = index.thumbnail(params["camera"], params["track"])
    uploaded = client.post("/api/explain", files={"image": ("q.jpg", thumbnail, "image/jpeg")}).json()
    assert uploaded == body


class TopHalfModel(torch.nn.Module):
    """A 'CNN' whose feature map is 1 over the top half of the image and 0 below."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward_features(self, images):
        fmap = torch.zeros(len(images), 8, 4, 2)
        fmap[:, :, :2] = 1.0
        return fmap


def test_a_response_map_is_red_where_the_feature_map_responds_and_blue_where_not():
    from occreid.apps.serve.explain import Explainer
    from occreid.config import Config

    cfg = Config()
    cfg.data.image_size = (64, 32)
    grey = Image.new("RGB", (20, 40), (128, 128, 128))
    picture = np.asarray(Image.open(io.BytesIO(Explainer(TopHalfModel(), cfg).response_map(grey))))
    top, bottom = picture[:8].reshape(-1, 3).mean(0), picture[-8:].reshape(-1, 3).mean(0)
    # half the grey image, half jet's colour: its high end (0.5, 0, 0) red, its low end (0, 0, 0.5) blue
    np.testing.assert_allclose(top, [128, 64, 64], atol=3)
    np.testing.assert_allclose(bottom, [64, 64, 128], atol=3)


def test_an_ogfr_model_shows_its_predicted_occlusion_pattern():
    from occreid.apps.serve.explain import Explainer
    from occreid.config import Config
    from occreid.methods import build_model

    cfg = Config.model_validate(
        {
            "model": {"name": "ogfr", "backbone": "vit_tiny_patch16", "vit_depth": 2, "pretrained": False},
            "data": {"image_size": [64, 32]},
            "ogfr": {
                "pattern_block": 1,
                "agent_block": 1,
                "shared_blocks": 1,
                "pattern_groups": [0, 1, 1, 2, 2, 3, 4],
            },
        }
    )
    torch.manual_seed(0)
    deployed = build_model(cfg, 4).deploy()
    explainer = Explainer(deployed, cfg)
    assert explainer.kind == "ogfr"
    pattern = explainer.explain(Image.new("RGB", (20, 40), (90, 140, 60)))["pattern"]
    assert sorted(p["pattern"] for p in pattern) == sorted(
        ["none", "top/bottom", "left/right", "block", "person"]
    )
    weights = [p["weight"] for p in pattern]
    assert weights == sorted(weights, reverse=True) and abs(sum(weights) - 1) < 1e-3
    assert len(set(weights)) > 1  # a prediction, not a uniform placeholder


class BrokenIndex:
    """An index whose every call fails as a bug would."""

    def list_tracks(self, offset, limit):
        raise RuntimeError("a bug deep inside\nwith a second line")


def test_an_unexpected_failure_is_one_line_in_the_page_and_the_log(capfd, caplog):
    import logging

    from occreid.apps.serve.app import ServeState

    caplog.set_level(logging.INFO)
    with live_server(ServeState(BrokenIndex())) as url:
        status, body = raw_get(url, "/api/tracks")
    assert status == 500
    assert body == b'{"error":"internal error; the server log has one line about it"}'
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert "a bug deep inside" in logged  # the one line names the problem ...
    assert "Traceback" not in logged and 'File "' not in logged  # ... and no traceback is printed


def test_cli_serves_on_127_0_0_1_by_default_and_warns_for_other_addresses(served, run_folders, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from occreid.cli import app

    path, _, _, _ = served
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kwargs: calls.append((application, kwargs)))
    monkeypatch.setattr("occreid.cli.serve._check_port", lambda host, port: None)
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--index", str(path), "--run", str(run_folders[0])])
    assert result.exit_code == 0, result.output
    application, options = calls[-1]
    assert options["host"] == "127.0.0.1" and options["port"] == 8765
    assert application.state.serve.hosts == ("127.0.0.1", "localhost", "::1")
    assert application.state.serve.upload_limit == 10 * 1024 * 1024
    assert application.state.serve.runs == [run_folders[0]]
    assert "warning" not in result.output
    assert application.state.serve.backend == "torch"
    result = runner.invoke(
        app, ["serve", "--index", str(path), "--host", "0.0.0.0", "--port", "9000", "--backend", "faiss"]
    )
    assert result.exit_code == 0, result.output
    application, options = calls[-1]
    assert options["host"] == "0.0.0.0" and options["port"] == 9000
    assert application.state.serve.backend == "faiss"
    assert application.state.serve.hosts is None  # reached by other names: any Host
    assert "warning: listening on 0.0.0.0" in result.output


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """occreid.cli.main, the real entry point, in this process: (exit status, stderr)."""
    import sys

    from occreid.cli import main

    monkeypatch.setattr(sys, "argv", ["occreid", *args])
    with pytest.raises(SystemExit) as done:
        main()
    return done.value.code, capsys.readouterr().err


def test_cli_refuses_bad_options_with_one_line(served, tmp_path, monkeypatch, capsys):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: pytest.fail("uvicorn must not start"))
    from occreid.evaluation import GalleryIndex

    path, _, _, _ = served
    image_index = GalleryIndex()
    image_index.add(np.ones((2, 4), np.float32), ["a.jpg", "b.jpg"])
    image_index = image_index.save(tmp_path / "images.npz")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    cases = [
        (["--index", str(tmp_path / "missing.npz")], "missing.npz"),
        (["--index", str(path), "--run", str(tmp_path / "norun")], "--run"),
        (["--index", str(path), "--run", str(tmp_path)], "not a training run"),
        (["--index", str(path), "--port", str(busy.getsockname()[1])], "pick another --port"),
        (["--index", str(path), "--checkpoint", str(tmp_path / "none.pt")], "none.pt"),
        (["--index", str(path), "--upload-limit-mb", "0"], "--upload-limit-mb"),
        (["--index", str(image_index)], "image index"),
        (["--index", str(path), "--backend", "annoy"], "--backend 'annoy'"),
        (["--index", str(path), "--device", "gpu"], "--device"),
    ]
    for options, says in cases:
        status, err = run_main(monkeypatch, capsys, "serve", *options)
        assert status == 2, (options, err)
        assert err.startswith("error: ") and says in err, (options, err)
        assert "Traceback" not in err and err.count("\n") == 1, err
    busy.close()
