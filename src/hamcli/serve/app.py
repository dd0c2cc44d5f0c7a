"""`hamcli serve`: one model, loaded once, behind a self-contained page and a JSON API (FastAPI).

    POST /api/predict   multipart `file` -> the JSON of `hamcli predict --format json` (a list of one row)
    POST /api/gradcam   multipart `file` (+ method, class, alpha) -> a PNG overlay
    GET  /api/model     architecture, classes, input size, figures from the model card
    GET  /healthz       {"status": "ok", ...}: answered at once, however busy the model is
    GET  /docs          the OpenAPI page FastAPI writes

Uploads are read into memory (never spooled to disk) up to `max_upload` bytes (413 beyond, 411 without
a length); not an image gives 415, a damaged one 422, one with too many pixels 413. The event loop only
reads requests: decoding and the model run on one worker thread (`hamcli.serve.worker`) behind a queue
of `max_queue` jobs, so a full queue is a 503 with Retry-After at once, a request that waits longer than
`timeout` seconds a 504, and a request whose client has gone is dropped before it runs. Predictions
waiting together run as one batch (the same numbers as one at a time). Only requests that name an
allowed host are answered (400 otherwise): a web page on another site cannot drive a local server
through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import io
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request  # this module is imported only once `hamcli[serve]` is known installed
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.formparsers import MultiPartParser
from starlette.middleware.trustedhost import TrustedHostMiddleware

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
STATUS = {"missing": 422, "not-image": 415, "too-large": 413, "damaged": 422}
METHODS = ("gradcam", "gradcam++", "layercam")


def model_info(predictor: Any) -> dict:
    """What the page and /api/model show: the model, its input and the figures its card records."""
    meta = predictor.ckpt_meta
    bundle = meta.get("bundle") if isinstance(meta.get("bundle"), dict) else {}
    figures = bundle.get("test") or {f"validation {k}": v for k, v in meta.get("metrics", {}).items()
                                     if k.startswith("val_") and isinstance(v, float)}
    path = predictor.card.path
    name = "bundled" if bundle else (path.parent.name if path.is_file() else path.name)
    return {"name": name, "arch": predictor.card.arch, "classes": list(predictor.classes),
            "precision": predictor.precision, "input_size": list(reversed(predictor.input_size)),
            "figures": {k: v for k, v in figures.items() if k != "ci95"},
            "figures_on": bundle.get("test_split", "the run's validation rows"),
            "notice": "A research tool trained on HAM10000 dermatoscopic images: not a diagnosis."}


class Rejected(Exception):
    def __init__(self, status: int, detail: str, headers: dict | None = None) -> None:
        self.status, self.detail, self.headers = status, detail, headers


def create_app(model: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD, device: str = "auto",
               precision: str = "fp32", max_queue: int = 32, timeout: float = 60.0,
               allowed_hosts: tuple[str, ...] = LOCAL_HOSTS) -> FastAPI:
    """The FastAPI application for `model` (a run, checkpoint, family or "bundled"; None: the default)."""
    from hamcli.data.preprocess import ImageReadError, Upload
    from hamcli.errors import HamcliError
    from hamcli.inference.load import load_model
    from hamcli.inference.predictor import Failure
    from hamcli.serve.worker import Busy, ModelWorker

    MultiPartParser.spool_max_size = max_upload + 1  # keep every upload in memory: nothing is written to disk
    predictor = load_model(model, device=device, precision=precision)
    info = model_info(predictor)
    page = files("hamcli.serve").joinpath("page.html").read_text(encoding="utf-8")
    codes = len(predictor.classes)

    def predict_batch(uploads: list[Upload]) -> list[Any]:
        """Each upload's row (all classes ranked), or the ImageReadError that says why it has none."""
        out: list[Any] = []
        good = []
        for upload in uploads:
            try:
                upload.decode()  # decoded once: the model reuses these pixels
                good.append(upload)
                out.append(None)
            except ImageReadError as exc:
                out.append(exc)
        rows = iter(predictor.predict_many(good, top_k=codes) if good else [])
        return [next(rows) if slot is None else slot for slot in out]

    worker = ModelWorker(predict_batch, max_queue=max_queue)
    app = FastAPI(title="hamcli", version=info["arch"],
                  description="Skin-lesion classification on dermatoscopic images (HAM10000). Not a diagnosis.")
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.state.worker = worker

    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    async def upload(request: Request) -> tuple[Upload, str, dict]:
        length = request.headers.get("content-length")
        if length is None:
            raise Rejected(411, "send the upload with a Content-Length")
        if not (length.isascii() and length.isdigit()) or int(length) > max_upload:
            raise Rejected(413, f"the upload is larger than {max_upload // (1024 * 1024)} MB")
        try:
            form = await asyncio.wait_for(request.form(max_files=1, max_fields=8), timeout)
        except asyncio.TimeoutError:
            raise Rejected(408, f"the upload did not arrive within {timeout:g} s") from None
        except Exception:  # noqa: BLE001 - a malformed multipart body
            raise Rejected(400, "not a multipart form with a `file` field") from None
        item = form.get("file")
        if item is None or isinstance(item, str):
            raise Rejected(400, "no `file` field in the form")
        data = await item.read()
        label = Path(item.filename or "upload").name
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return Upload(data, label), label, fields

    async def run(request: Request, kind: str, payload: Any) -> Any:
        """The job's result from the worker, as soon as it has one; 503, 504 or a dropped job otherwise."""
        try:
            job = worker.submit(kind, payload)
        except Busy:
            raise Rejected(503, f"the model is busy ({max_queue} requests waiting); try again shortly",
                           {"Retry-After": "1"}) from None
        waiting = asyncio.ensure_future(asyncio.wrap_future(job.future))
        gone = asyncio.ensure_future(_client_gone(request))
        try:
            done, _ = await asyncio.wait({waiting, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if waiting not in done:
            job.cancel()
            waiting.cancel()
            if gone in done:
                raise Rejected(499, "the client closed the connection")
            raise Rejected(504, f"the model did not answer within {timeout:g} s; try again shortly")
        return waiting.result()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> str:
        return page

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "waiting": worker.waiting}

    @app.get("/api/model")
    async def describe() -> dict:
        return info

    @app.post("/api/predict")
    async def predict(request: Request) -> list[dict]:
        image, label, fields = await upload(request)
        top_k = fields.get("top_k", "3")
        if not (top_k.isascii() and top_k.isdigit() and 1 <= int(top_k) <= codes):
            raise Rejected(422, f"top_k must be a whole number from 1 to {codes}")
        row = await run(request, "predict", image)
        if isinstance(row, ImageReadError):
            raise Rejected(STATUS.get(row.kind, 422), str(row))
        if isinstance(row, Failure):
            raise Rejected(422, row.reason)
        return [{**row.as_dict(), "top_k": row.as_dict()["top_k"][:int(top_k)], "path": label}]

    @app.post("/api/gradcam", response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "the overlay as a PNG"}})
    async def gradcam(request: Request) -> Response:
        image, label, fields = await upload(request)
        method, target = fields.get("method", "gradcam"), fields.get("class", "pred")
        if method not in METHODS:
            raise Rejected(422, f"method must be one of {', '.join(METHODS)}")
        if target != "pred" and target not in predictor.classes:
            raise Rejected(422, f"class must be pred or one of {', '.join(predictor.classes)}")
        try:
            alpha = float(fields.get("alpha", "0.45"))
        except ValueError:
            alpha = -1.0
        if not 0 <= alpha <= 1:
            raise Rejected(422, "alpha must be a number from 0 to 1")
        try:
            png, headers = await run(request, "call", lambda: _overlay(predictor, image, method, target, alpha,
                                                                       fields.get("panel") == "true"))
        except ImageReadError as exc:
            raise Rejected(STATUS.get(exc.kind, 422), str(exc)) from None
        except HamcliError as exc:  # e.g. a map that cannot be computed for this model
            raise Rejected(422, str(exc)) from None
        return Response(png, media_type="image/png", headers=headers)

    return app


def _overlay(predictor: Any, image: Any, method: str, target: str, alpha: float, as_panel: bool
             ) -> tuple[bytes, dict]:
    """Run on the worker thread: one Grad-CAM overlay (or panel) as PNG bytes and its headers."""
    from hamcli.explain.maps import explain
    from hamcli.explain.overlay import overlay, panel

    result = explain(predictor, image, target=target, method=method)
    picture = panel(result, alpha) if as_panel else overlay(result.image, result.heatmap, alpha, seen=result.box)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue(), {"X-Predicted": result.predicted, "X-Explained": result.target, "X-Layer": result.layer}


async def _client_gone(request: Request) -> None:
    """Returns once the client has closed the connection."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.25)
