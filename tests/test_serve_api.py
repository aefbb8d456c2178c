"""``unmask serve``'s REST API on real files and real (small, randomly initialised) checkpoints.

FastAPI's TestClient for the request/response contract; a real uvicorn server on a loopback port where the
behaviour is about the connection itself: a full queue (429) while an upload is held open, a stalled upload
(408), scoring over the time limit (504), and an over-limit body refused while it is still streaming (413).
"""

from __future__ import annotations

import os
import select
import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from _serve_fixtures import (FFPP_CLIP, LiveServer, multipart, raw_request_head, read_response,  # noqa: E402
                             tiny_checkpoint, wait_until)

FAST = {"frames": 4, "heatmap_frames": 2}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("serve_run") / "tiny"
    tiny_checkpoint(d)
    return d


@pytest.fixture(scope="module")
def clip(ffpp_root) -> Path:
    return ffpp_root / FFPP_CLIP


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory, astronaut_rgb) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", astronaut_rgb[:, :, ::-1])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def app(run_dir, tmp_path_factory):
    from unmask.serve import create_app

    up = tmp_path_factory.mktemp("uploads")
    return create_app([str(run_dir)], upload_dir=str(up), max_upload_mb=0.5, max_results=3, **FAST)


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


def _post(client, data: bytes, name: str = "clip.mp4", **kw):
    return client.post("/v1/detect", files={"file": (name, data, "application/octet-stream")}, **kw)


def _uploads_left(app) -> list[str]:
    return sorted(os.listdir(app.state.unmask.upload_dir))


def test_ffpp_clip_gives_a_verdict_frames_faces_and_heat_maps(client, app, clip):
    import cv2

    r = _post(client, clip.read_bytes())
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["status"] == "ok" and b["file"]["kind"] == "video" and b["file"]["type"] == "MP4 video"
    assert b["file"]["bytes"] == clip.stat().st_size and (b["file"]["width"], b["file"]["height"]) == (1280, 720)
    p, t = b["fake_probability"], b["threshold"]
    assert 0.0 <= p <= 1.0 and t == 0.3  # the checkpoint's validation threshold
    assert b["verdict"] == ("fake" if p > t else "real")
    assert len(b["frames"]) == 4 and all(fr["faces"] for fr in b["frames"])
    assert np.isclose(p, np.mean([fr["score"] for fr in b["frames"]]), atol=1e-5)  # video = mean over frames
    for fr in b["frames"]:
        x0, y0, x1, y1 = fr["faces"][0]["box"]
        assert 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 720
    model = client.get("/v1/model").json()
    assert b["model"]["id"] == model["model_id"] == app.state.unmask.model_id
    assert set(b["timings"]) >= {"upload", "queue", "decode", "faces", "model", "heatmaps", "total"}
    assert any("not calibrated" in w for w in b["warnings"])
    assert len(b["heatmaps"]) == 2  # heatmap_frames
    for url in b["heatmaps"]:
        img = client.get(url)
        assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
        arr = cv2.imdecode(np.frombuffer(img.content, np.uint8), cv2.IMREAD_COLOR)
        assert arr.shape == (720, 1280, 3)
    framed = [fr for fr in b["frames"] if "images" in fr]
    assert {fr["images"]["heatmap"] for fr in framed} == set(b["heatmaps"])
    assert client.get(framed[0]["images"]["frame"]).status_code == 200
    again = client.get(b["result_url"])
    assert again.status_code == 200 and again.json() == b
    assert _uploads_left(app) == []  # the upload was deleted after scoring


def test_the_type_is_read_from_the_content_not_the_name(client, app, astronaut_png):
    r = _post(client, b"just some text, not a video\n" * 4, "clip.mp4")
    assert r.status_code == 415
    assert "not an image or video" in r.json()["detail"] and "text" in r.json()["detail"]
    r = _post(client, astronaut_png, "holiday.mp4")  # a PNG named .mp4 is scored as the image it is
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["file"]["type"] == "PNG image" and b["file"]["kind"] == "image" and b["file"]["name"] == "holiday.mp4"
    assert len(b["frames"]) == 1 and b["frames"][0]["faces"]
    assert _uploads_left(app) == []


def test_corrupt_and_no_face_files_get_detects_one_line_reasons(client, app, clip, tmp_path):
    import cv2

    from unmask.evaluate.scoring import MediaScorer

    corrupt = clip.read_bytes()[:4000]  # an MP4 header (sniffs as MP4) without its data: not decodable
    r = _post(client, corrupt, "broken.mp4")
    assert r.status_code == 422
    b = r.json()
    assert b["status"] == "error" and "\n" not in b["detail"] and "unmask-serve" not in b["detail"]
    local = tmp_path / "broken.mp4"
    local.write_bytes(corrupt)
    scorer: MediaScorer = app.state.unmask.scorer
    assert b["detail"] == scorer.score(local).reason.replace(str(local), "broken.mp4")  # detect's reason

    noise = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", noise)
    r = _post(client, png.tobytes(), "noise.png")
    assert r.status_code == 422
    assert r.json()["status"] == "no_face" and r.json()["detail"] == "no face found in 1 frame"
    assert _uploads_left(app) == []


def test_oversized_upload_is_refused(client, app, clip):
    big = clip.read_bytes() + bytes(600 * 1024)  # a valid MP4 start, then over the 0.5 MB limit
    r = _post(client, big)
    assert r.status_code == 413 and "limit of 512 KB" in r.json()["detail"]
    assert _uploads_left(app) == []


def test_heat_maps_only_by_opaque_id_no_path_traversal(client, app, astronaut_png):
    r = _post(client, astronaut_png, "face.png")
    assert r.status_code == 200
    b = r.json()
    url = b["heatmaps"][0]
    rid, name = url.split("/")[-2:]
    store = app.state.unmask.results
    secret = store.root / "secret.txt"
    secret.write_text("TOP SECRET")
    (store.root / rid / "notes.jpg").write_text("not served: the server did not write it")
    bad = [f"/v1/results/{rid}/..%2Fsecret.txt", f"/v1/results/{rid}/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
           f"/v1/results/{rid}/%2Fetc%2Fpasswd", f"/v1/results/..%2F{rid}/{name}", f"/v1/results/{rid}/notes.jpg",
           f"/v1/results/{rid[:-1]}{'B' if rid[-1] == 'A' else 'A'}/{name}", f"/v1/results/{rid}/{name}%00.txt", "/v1/results/..%2F..%2Fetc%2Fpasswd",
           f"/v1/results/{rid}/frame_00000.jpg/..%2F..%2Fsecret.txt", f"/v1/results/{rid}/..\\secret.txt"]
    for u in bad:
        got = client.get(u)
        assert got.status_code == 404, u
        assert b"TOP SECRET" not in got.content and b"root:" not in got.content
    assert client.get(url).status_code == 200
    secret.unlink()


def test_results_are_bounded_oldest_evicted(client, app, astronaut_png):
    urls = []
    for i in range(4):  # max_results=3
        r = _post(client, astronaut_png, f"face{i}.png")
        assert r.status_code == 200
        urls.append(r.json()["heatmaps"][0])
    assert client.get(urls[0]).status_code == 404
    assert all(client.get(u).status_code == 200 for u in urls[1:])
    assert len([d for d in app.state.unmask.results.root.iterdir() if d.is_dir()]) == 3


def test_health_model_docs_and_page(client):
    h = client.get("/v1/health").json()
    assert h["status"] == "ok" and h["limits"]["max_upload_bytes"] == 512 * 1024 and h["auth_required"] is False
    m = client.get("/v1/model").json()
    (d,) = m["models"]
    assert d["backbone"] == "resnet18" and d["input_size"] == 96 and d["threshold"] == 0.3
    assert d["calibration"] is None and m["ensemble"] is False
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static-offline-docs/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def test_token_guards_everything_but_health_page_and_docs(run_dir, clip):
    from fastapi.testclient import TestClient

    from unmask.serve import create_app

    app = create_app([str(run_dir)], token="s3cret-token-123", **FAST)
    with TestClient(app) as c:
        h = c.get("/v1/health").json()
        assert h["auth_required"] is True and h["model_id"] is None  # the model is not told to strangers
        assert c.get("/").status_code == 200 and c.get("/docs").status_code == 200
        assert c.get("/v1/model").status_code == 401
        assert c.get("/v1/model", headers={"Authorization": "Bearer wrong-token-000"}).status_code == 401
        r = _post(c, clip.read_bytes())
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": "Bearer s3cret-token-123"}
        assert c.get("/v1/model", headers=good).status_code == 200
        r = _post(c, clip.read_bytes(), headers=good, params={"heatmaps": "false"})
        assert r.status_code == 200 and r.json()["heatmaps"] == []
        assert c.get(r.json()["result_url"]).status_code == 401
        assert c.get(r.json()["result_url"], headers=good).status_code == 200


def test_ensemble_and_calibration_are_reported(run_dir, tmp_path, astronaut_png):
    from fastapi.testclient import TestClient

    from unmask.evaluate.calibration import Calibration
    from unmask.serve import create_app

    cal = Calibration(temperature=2.5, ece_before=0.31, ece_after=0.04, fitted_on="test set", n=40,
                      threshold=0.45).to_meta()
    config = {"method": {"name": "sbi"}, "data": {"store": "/data/prepared/ffpp_c23", "train_split": "train",
                                                 "val_split": "val", "val_fakes": "pseudo"}, "paper": "test config"}
    other = tiny_checkpoint(tmp_path / "calibrated", seed=1, calibration=cal, config=config)
    app = create_app([str(run_dir), str(other)], **FAST)
    with TestClient(app) as c:
        m = c.get("/v1/model").json()
        assert m["ensemble"] is True and len(m["models"]) == 2
        assert m["models"][1]["calibration"]["temperature"] == 2.5 and m["models"][1]["temperature"] == 2.5
        assert m["models"][0]["calibration"] is None
        assert m["models"][1]["method"] == "sbi" and m["models"][1]["paper"] == "test config"
        assert m["models"][1]["training_data"]["store"] == "/data/prepared/ffpp_c23"
        assert m["models"][1]["training_data"]["val_fakes"] == "pseudo" and m["models"][1]["epoch"] == 0
        r = _post(c, astronaut_png, "face.png")
        assert r.status_code == 200
        b = r.json()
        assert [x["model_id"] for x in b["per_model"]] == b["model"]["models"] == [d["model_id"] for d in m["models"]]
        assert np.isclose(b["fake_probability"], np.mean([x["probability"] for x in b["per_model"]]), atol=1e-5)
        assert np.isclose(b["threshold"], (0.3 + 0.45) / 2)
        assert b["verdict"] == ("fake" if b["fake_probability"] > b["threshold"] else "real")


# --- a real server: the connection-level limits ------------------------------------------------------------


@pytest.fixture(scope="module")
def live(run_dir, tmp_path_factory):
    from unmask.serve import create_app

    up = tmp_path_factory.mktemp("live_uploads")
    app = create_app([str(run_dir)], workers=1, queue_size=0, time_limit_s=60, max_upload_mb=1,
                     upload_dir=str(up), **FAST)
    srv = LiveServer(app)
    yield srv, app
    srv.stop()


def test_full_queue_answers_429_with_retry_after(live, clip):
    import httpx

    srv, app = live
    body, ctype = multipart(clip.read_bytes())
    half = len(body) // 2
    with socket.create_connection(("127.0.0.1", srv.port)) as held:
        held.sendall(raw_request_head(srv.port, "/v1/detect", ctype, len(body)) + body[:half])
        assert wait_until(lambda: httpx.get(srv.url + "/v1/health").json()["queue"]["admitted"] == 1)
        r = httpx.post(srv.url + "/v1/detect", files={"file": ("clip.mp4", clip.read_bytes())}, timeout=60)
        assert r.status_code == 429 and "busy" in r.json()["detail"]
        assert int(r.headers["retry-after"]) >= 1
        held.sendall(body[half:])  # the held upload completes and is scored normally
        status, _, content = read_response(held)
    assert status == 200, content[:300]
    assert wait_until(lambda: httpx.get(srv.url + "/v1/health").json()["queue"]["admitted"] == 0)
    r = httpx.post(srv.url + "/v1/detect", files={"file": ("clip.mp4", clip.read_bytes())}, timeout=120)
    assert r.status_code == 200  # the slot was given back
    assert httpx.get(srv.url + "/v1/health").json()["queue"]["rejected"] >= 1
    assert _uploads_left(app) == []


def test_over_limit_body_is_refused_while_streaming(live, clip):
    srv, app = live
    _, ctype = multipart(b"")
    head = (b"--unmaskTestBoundary7\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n"
            b"Content-Type: video/mp4\r\n\r\n")
    chunk = clip.read_bytes()[:65536]
    sent = 0
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(raw_request_head(srv.port, "/v1/detect", ctype, None))  # chunked: no length to check up front
        answered = False
        for i in range(400):  # up to 25 MB; the limit is 1 MB
            data = head + chunk if i == 0 else chunk
            try:
                s.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
            sent += len(data)
            if select.select([s], [], [], 0.05)[0]:
                answered = True
                break
        assert answered, "the server read the whole over-limit body without answering"
        assert sent < 8 * 1024 * 1024  # refused soon after the limit (+ socket buffers), not after the whole body
        status, _, content = read_response(s)
    assert status in (413, 0)  # 0: the reset raced the response on the client side
    if status:
        assert b"limit of 1 MB" in content
    assert wait_until(lambda: _uploads_left(app) == [])


def test_stalled_upload_and_slow_scoring_hit_the_time_limit(run_dir, clip, tmp_path):
    import httpx

    from unmask.serve import create_app

    up = tmp_path / "uploads"
    app = create_app([str(run_dir)], time_limit_s=0.5, frames=32, heatmap_frames=8, upload_dir=str(up))
    srv = LiveServer(app)
    try:
        body, ctype = multipart(clip.read_bytes())
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(raw_request_head(srv.port, "/v1/detect", ctype, len(body)) + body[:1000])
            status, _, content = read_response(s, timeout=30)  # never sends the rest
        assert status == 408 and b"time limit of 0.5 s" in content
        # 32 frames of 720p (HOG on each) + 8 heat maps (Grad-CAM, JPEGs) take seconds on a CPU: 504 at 0.5 s
        r = httpx.post(srv.url + "/v1/detect", files={"file": ("clip.mp4", clip.read_bytes())}, timeout=60)
        assert r.status_code == 504 and "time limit" in r.json()["detail"]
        # the worker keeps its slot until the job really ends, then everything is given back and deleted
        assert wait_until(lambda: httpx.get(srv.url + "/v1/health").json()["queue"]["admitted"] == 0, timeout=120)
        assert wait_until(lambda: os.listdir(up) == [], timeout=30)
        assert httpx.get(srv.url + "/v1/health").json()["queue"]["timed_out"] == 1
    finally:
        srv.stop()


# --- the command ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_unmask_serve_command_serves_on_loopback_by_default(run_dir):
    import subprocess
    import sys

    import httpx

    from _serve_fixtures import free_port

    port = free_port()
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "unmask.cli", "serve", "--checkpoint", str(run_dir), "--port",
                             str(port), "--frames", "2", "--heatmap-frames", "0", "--log-level", "warning"], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def up():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None  # stop waiting if it died

        assert wait_until(up, timeout=120) and proc.poll() is None
        h = httpx.get(f"http://127.0.0.1:{port}/v1/health").json()
        assert h["model_id"].startswith("tiny-") and h["limits"]["frames"] == 2
        conns = [ln for ln in Path("/proc/net/tcp").read_text().splitlines()[1:] if ln.split()[3] == "0A"]
        local = {ln.split()[1] for ln in conns}
        assert f"0100007F:{port:04X}" in local  # listening on 127.0.0.1 only
        assert f"00000000:{port:04X}" not in local
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in err  # it printed where it listens


def test_serve_command_errors_are_one_line(tmp_path, capsys):
    from unmask.cli import main

    assert main(["serve", "--checkpoint", str(tmp_path / "missing"), "--port", "8123"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("unmask serve: error:") and "\n" not in err
    assert main(["serve", "--untrained", "--port", "70000"]) == 1
    assert "--port must be in 1..65535" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tmp_path), "--untrained"]) == 1
