"""`hamcli serve`: one model, loaded once, behind a self-contained page and a JSON API (FastAPI).

    POST /api/predict   multipart `file` -> the JSON of `hamcli predict --format json` (a list of one row)
    POST /api/gradcam   multipart `file` (+ method, class, alpha) -> a PNG overlay
    GET  /api/model     architecture, classes, input size, figures from the model card
    GET  /healthz       {"status": "ok"}
    GET  /docs          the OpenAPI page FastAPI writes

Uploads are read into memory (never spooled to disk) up to `max_upload` bytes (413 beyond, 411 without
a length); not an image gives 415, a damaged one 422, one with too many pixels 413. Prediction runs
concurrently; Grad-CAM holds a lock, since its hooks live on the shared model for one call.
"""

from __future__ import annotations

import io
import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request  # this module is imported only once `hamcli[serve]` is known installed
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.formparsers import MultiPartParser

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
STATUS = {"missing": 422, "not-image": 415, "too-large": 413, "damaged": 422}


def model_info(predictor: Any) -> dict:
    """What the page and /api/model show: the model, its input and the figures its card records."""
    meta = predictor.ckpt_meta
    bundle = meta.get("bundle", {})
    figures = bundle.get("test") or {f"validation {k}": v for k, v in meta.get("metrics", {}).items()
                                     if k.startswith("val_") and isinstance(v, float)}
    path = predictor.card.path
    name = "bundled" if bundle else (path.parent.name if path.is_file() else path.name)
    return {"name": name, "arch": predictor.card.arch, "classes": list(predictor.classes),
            "precision": predictor.precision,
            "input_size": list(reversed(predictor.input_size)), "figures": figures,
            "figures_on": bundle.get("test_split", "the run's validation rows"),
            "notice": "A research tool trained on HAM10000 dermatoscopic images: not a diagnosis."}


def create_app(model: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD, device: str = "auto",
               precision: str = "fp32") -> FastAPI:
    """The FastAPI application for `model` (a run, checkpoint, family or "bundled"; None: the default)."""
    from hamcli.data.preprocess import ImageReadError, Upload
    from hamcli.errors import UsageError
    from hamcli.explain.maps import explain
    from hamcli.explain.overlay import overlay, panel
    from hamcli.inference.load import load_model

    MultiPartParser.spool_max_size = max_upload + 1  # keep every upload in memory: nothing is written to disk
    predictor = load_model(model, device=device, precision=precision)
    info = model_info(predictor)
    cam_lock = threading.Lock()
    page = files("hamcli.serve").joinpath("page.html").read_text(encoding="utf-8")
    app = FastAPI(title="hamcli", version=info["arch"],
                  description="Skin-lesion classification on dermatoscopic images (HAM10000). Not a diagnosis.")

    class Rejected(Exception):
        def __init__(self, status: int, detail: str) -> None:
            self.status, self.detail = status, detail

    @app.exception_handler(Rejected)
    async def rejected(request: Request, exc: Rejected) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    async def upload(request: Request) -> tuple[Any, str, dict]:
        length = request.headers.get("content-length")
        if length is None:
            raise Rejected(411, "send the upload with a Content-Length")
        if not length.isdigit() or int(length) > max_upload:
            raise Rejected(413, f"the upload is larger than {max_upload // (1024 * 1024)} MB")
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Exception as exc:  # noqa: BLE001 - a malformed multipart body
            raise Rejected(400, f"not a multipart form with a `file` field ({exc})") from None
        item = form.get("file")
        if item is None or isinstance(item, str):
            raise Rejected(400, "no `file` field in the form")
        data = await item.read()
        label = Path(item.filename or "upload").name
        image = Upload(data, label)
        try:  # decode it now, for a clear status; the model reuses these pixels, as it would read the file on disk
            image.decode(predictor.input_size)
        except ImageReadError as exc:
            raise Rejected(STATUS.get(exc.kind, 422), str(exc)) from None
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return image, label, fields

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home() -> str:
        return page

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/model")
    def describe() -> dict:
        return info

    @app.post("/api/predict")
    async def predict(request: Request) -> list[dict]:
        image, label, fields = await upload(request)
        top_k = fields.get("top_k", "3")
        if not top_k.isdigit() or not 1 <= int(top_k) <= len(predictor.classes):
            raise Rejected(422, f"top_k must be 1 to {len(predictor.classes)}")
        row = predictor.predict_many([image], top_k=int(top_k))[0]
        return [{**row.as_dict(), "path": label}]

    @app.post("/api/gradcam", response_class=Response,
              responses={200: {"content": {"image/png": {}}, "description": "the overlay as a PNG"}})
    async def gradcam(request: Request) -> Response:
        image, label, fields = await upload(request)
        try:
            alpha = float(fields.get("alpha", "0.45"))
            with cam_lock:
                result = explain(predictor, image, target=fields.get("class", "pred"),
                                 method=fields.get("method", "gradcam"))
            picture = panel(result, alpha) if fields.get("panel") == "true" else overlay(result.image,
                                                                                          result.heatmap, alpha)
        except (UsageError, ValueError) as exc:
            raise Rejected(422, str(exc)) from None
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        headers = {"X-Predicted": result.predicted, "X-Explained": result.target, "X-Layer": result.layer}
        return Response(buf.getvalue(), media_type="image/png", headers=headers)

    return app
