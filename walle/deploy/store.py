"""The bundle store: immutable, content-addressed bundles over HTTP (aiohttp).

``PUT /bundles/<sha256>`` stores a bundle after checking its bytes hash to the address;
``POST /bundles`` stores one and answers its address. ``GET``/``HEAD /bundles/<sha256>``
serve it with a strong ETag (the digest), ``If-None-Match`` and single ``Range`` requests, so
an interrupted download resumes where it stopped. ``GET /metrics`` counts requests (the
fleet benchmark reads it). ``max_bytes_per_s`` throttles bodies (a bandwidth cap; tests use
it to kill the store mid-download).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

from aiohttp import web

from walle.logging import get_logger

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 64 * 1024
_log = get_logger("deploy.store")

METRICS: web.AppKey[Counter[str]] = web.AppKey("metrics")
ROOT = web.AppKey("root", Path)
RATE = web.AppKey("rate", float)


def _bundle_path(request: web.Request) -> tuple[str, Path]:
    digest = request.match_info["digest"]
    if not _DIGEST.match(digest):
        raise web.HTTPBadRequest(text=f"{digest!r} is not a lowercase hex sha256\n")
    return digest, request.app[ROOT] / digest


async def _receive(request: web.Request) -> tuple[str, Path]:
    """Stream the request body into a temp file in the store, hashing as it goes."""
    root = request.app[ROOT]
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=root)
    hasher = hashlib.sha256()
    with os.fdopen(fd, "wb") as handle:
        async for chunk in request.content.iter_chunked(_CHUNK):
            hasher.update(chunk)
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    return hasher.hexdigest(), Path(tmp)


def _commit(tmp: Path, final: Path) -> None:
    if final.exists():
        tmp.unlink()
    else:
        os.replace(tmp, final)


async def put_bundle(request: web.Request) -> web.Response:
    """Store the body under the digest in the path, refusing bytes that hash otherwise."""
    digest, final = _bundle_path(request)
    request.app[METRICS]["puts"] += 1
    actual, tmp = await _receive(request)
    if actual != digest:
        tmp.unlink()
        raise web.HTTPUnprocessableEntity(text=f"body hashes to {actual}, path says {digest}\n")
    existed = final.exists()
    _commit(tmp, final)
    return web.json_response(
        {"digest": digest, "url": f"/bundles/{digest}"}, status=200 if existed else 201
    )


async def post_bundle(request: web.Request) -> web.Response:
    """Store the body under its own digest and answer the address."""
    request.app[METRICS]["puts"] += 1
    digest, tmp = await _receive(request)
    _commit(tmp, request.app[ROOT] / digest)
    return web.json_response({"digest": digest, "url": f"/bundles/{digest}"}, status=201)


def _range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The (start, stop) of a single Range request, or None for the whole body."""
    if "Range" not in request.headers:
        return None
    unsatisfiable = {"Content-Range": f"bytes */{size}"}
    try:
        window = request.http_range
    except ValueError as exc:
        raise web.HTTPRequestRangeNotSatisfiable(headers=unsatisfiable) from exc
    start, stop = window.start or 0, size if window.stop is None else min(window.stop, size)
    if start < 0:
        start = max(size + start, 0)
    if start >= size or start >= stop:
        raise web.HTTPRequestRangeNotSatisfiable(headers=unsatisfiable)
    return start, stop


async def get_bundle(request: web.Request) -> web.StreamResponse:
    """Serve a bundle (whole or one range) with ETag; 304 when the client has it."""
    digest, path = _bundle_path(request)
    metrics = request.app[METRICS]
    metrics["gets"] += 1
    if not path.is_file():
        raise web.HTTPNotFound(text=f"no bundle {digest}\n")
    etag = f'"{digest}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "public, max-age=31536000, immutable",
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    size = path.stat().st_size
    window = _range(request, size)
    start, stop = window or (0, size)
    if window:
        metrics["range_gets"] += 1
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response = web.StreamResponse(status=206 if window else 200, headers=headers)
    response.content_length = stop - start
    response.content_type = "application/x-tar"
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    await _send_file(response, path, start, stop, request.app[RATE])
    metrics["bytes_sent"] += stop - start
    await response.write_eof()
    return response


async def _send_file(
    response: web.StreamResponse, path: Path, start: int, stop: int, rate: float
) -> None:
    chunk = _CHUNK if rate <= 0 else max(1024, int(rate / 20))
    with open(path, "rb") as handle:
        handle.seek(start)
        left = stop - start
        while left > 0:
            data = handle.read(min(chunk, left))
            await response.write(data)
            left -= len(data)
            if rate > 0:
                await asyncio.sleep(len(data) / rate)


async def metrics(request: web.Request) -> web.Response:
    """Request counters since start: gets, range_gets, puts, bytes_sent."""
    counters = request.app[METRICS]
    return web.json_response(dict(counters))


def make_store_app(root: Path, *, max_bytes_per_s: float = 0.0) -> web.Application:
    """The store's aiohttp application serving bundles from directory ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".upload-*"):
        stale.unlink()
    app = web.Application(client_max_size=1024**3)
    app[ROOT] = root
    app[RATE] = float(max_bytes_per_s)
    app[METRICS] = Counter()
    app.router.add_put("/bundles/{digest}", put_bundle)
    app.router.add_post("/bundles", post_bundle)
    app.router.add_get("/bundles/{digest}", get_bundle)  # aiohttp adds HEAD for GET routes
    app.router.add_get("/metrics", metrics)
    from walle.deploy.metrics import StoreCollector, attach_metrics  # Prometheus /metrics

    counters = app[METRICS]
    attach_metrics(app, "store", [StoreCollector(counters)])
    return app
