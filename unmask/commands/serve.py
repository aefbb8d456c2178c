"""Serve a detector over HTTP: a REST API and a single page to drop a video on.

The model(s) are loaded once; each upload is scored exactly as `unmask detect` scores a file (faces, 12.5%
crops, calibrated probability, verdict at the checkpoint's threshold, Grad-CAM heat maps). Several
--checkpoint options make an ensemble (mean of the calibrated probabilities; per-model scores in the JSON).

Endpoints:
  GET  /                  the page: drag and drop or pick a file, upload progress, verdict, per-frame plot,
                          frames with face boxes and heat maps, JSON download
  POST /v1/detect         multipart upload (field "file") -> JSON; ?heatmaps=false skips the heat maps
  GET  /v1/health         liveness, queue, limits (never needs the token)
  GET  /v1/model          backbone, method, training data, threshold, calibration of each model
  GET  /v1/results/ID[/F] a result's JSON, its frame / heat-map images (opaque ids from the server's own store)
  GET  /docs              OpenAPI docs (served from the installed package; no CDN)

Limits and safety: 127.0.0.1 unless --host says otherwise; uploads over --max-upload-mb are refused while they
stream (413); the type is read from the content, not the name (415); unreadable files and files with no face
get detect's one-line reason (422); at most --workers + --queue requests are admitted, the next gets 429 with
Retry-After; each request has --time-limit seconds (408 for a slow upload, 504 for slow scoring); uploads go to a
private (0700) temp dir and are deleted after scoring; at most --max-results results are kept (oldest deleted);
with --token (or $UNMASK_SERVE_TOKEN) every endpoint but /, /docs and /v1/health needs
"Authorization: Bearer TOKEN".

  unmask serve --checkpoint runs/sbi_effb4
  unmask serve --checkpoint runs/sbi --checkpoint runs/bbmg_nrs --port 8080 --token "$(openssl rand -hex 16)"
  unmask serve --untrained            # pipeline check only: the scores are meaningless
"""

from __future__ import annotations

import argparse

from unmask.cli import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", action="append", default=[], metavar="RUN",
                   help="trained checkpoint (.pt file or run directory); repeat for an ensemble")
    p.add_argument("--untrained", action="store_true",
                   help="no checkpoint: an untrained backbone (ImageNet/random weights); scores are meaningless")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="backbone for --untrained (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of --untrained's random weights (default 0)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token", default=None,
                   help="require 'Authorization: Bearer TOKEN' (default: $UNMASK_SERVE_TOKEN, else no token)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload in MB (default 200)")
    p.add_argument("--time-limit", type=float, default=120.0, metavar="S",
                   help="seconds per request, upload and scoring together (default 120)")
    p.add_argument("--workers", type=int, default=1, help="files scored at the same time (default 1)")
    p.add_argument("--queue", type=int, default=4, help="requests waiting beyond the workers before 429 (default 4)")
    p.add_argument("--frames", type=int, default=32, help="frames sampled per video, evenly spaced (default 32)")
    p.add_argument("--heatmap-frames", type=int, default=8, metavar="K",
                   help="frames per video with a heat map and a frame image (default 8; 0 = none)")
    p.add_argument("--max-side", type=int, default=0,
                   help="downscale decoded video frames to this longest side (default 0: as decoded)")
    p.add_argument("--max-results", type=int, default=50, help="results kept for their images (default 50)")
    p.add_argument("--results-dir", default=None, help="where results are kept (default: a private temp dir)")
    p.add_argument("--batch-size", type=int, default=32, help="faces per forward pass (default 32)")
    p.add_argument("--face-detector", default="dlib_hog", help="registered face detector (default: dlib_hog)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default info)")


def run(args: argparse.Namespace) -> int:
    from unmask.serve import run_server

    if not (1 <= args.port <= 65535):
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    run_server(args.checkpoint, host=args.host, port=args.port, untrained=args.untrained, backbone=args.backbone,
               seed=args.seed, token=args.token, max_upload_mb=args.max_upload_mb, time_limit_s=args.time_limit,
               workers=args.workers, queue_size=args.queue, frames=args.frames, heatmap_frames=args.heatmap_frames,
               max_side=args.max_side, max_results=args.max_results, results_dir=args.results_dir,
               batch_size=args.batch_size, face_detector=args.face_detector, device=args.device,
               log_level=args.log_level)
    return 0
