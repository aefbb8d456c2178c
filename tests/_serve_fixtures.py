"""Helpers for the ``unmask serve`` tests: a small real checkpoint, a real uvicorn server on a free loopback port
(in a thread of the test process), and raw multipart bodies for requests a normal client cannot make (a stalled
upload, a chunked body that never ends)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

FFPP_CLIP = "original_sequences/youtube/c40/videos/183.mp4"


def tiny_checkpoint(run_dir: Path, *, seed: int = 0, threshold: float = 0.3, calibration: dict | None = None,
                    config: dict | None = None) -> Path:
    """A real, randomly initialised ResNet-18 detector at 96 px saved as a run's best.pt (fast to score)."""
    import torch

    from unmask.models import build_detector, save_checkpoint

    torch.manual_seed(seed)
    det = build_detector("resnet18", pretrained=None, input_size=96)
    extra = {"calibration": calibration} if calibration is not None else None
    return save_checkpoint(Path(run_dir) / "best.pt", det, config=config, val={"threshold": threshold}, extra=extra,
                           epoch=0 if config else None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``app`` served by uvicorn on 127.0.0.1:<free port> in a background thread; ``stop()`` shuts it down."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t0 > 60:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def multipart(data: bytes, filename: str = "clip.mp4", boundary: str = "unmaskTestBoundary7") -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data upload of ``data`` as field ``file``."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def raw_request_head(port: int, path: str, content_type: str, length: int | None, extra: str = "") -> bytes:
    te = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n{te}{extra}"
            f"Connection: close\r\n\r\n").encode()


def read_response(sock: socket.socket, timeout: float = 120.0) -> tuple[int, dict, bytes]:
    """(status, headers lower-cased, body) of the HTTP/1.1 response on ``sock`` (read until close)."""
    sock.settimeout(timeout)
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size or b"0", 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, headers, body


def wait_until(cond, timeout: float = 30.0, step: float = 0.05) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())
