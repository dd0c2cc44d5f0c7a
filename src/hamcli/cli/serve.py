"""`hamcli serve` and `hamcli export`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import hamcli.cli.render as render
from hamcli.cli.options import choice, inference_precision
from hamcli.errors import HamcliError
from hamcli.models.precision import DEVICES


class MissingExtra(HamcliError):
    """An optional part of hamcli is not installed."""


def _need(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"this needs {module}, which is not installed: run `pip install 'hamcli[{extra}]'`")


def serve(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Run name or folder, K-fold family, checkpoint "
                                        "file, or bundled (default: the default model, else the bundled "
                                        "model)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 opens it to the network."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    allow_host: list[str] = typer.Option([], "--allow-host", help="A host name requests may address besides "
                                         "localhost (repeat it; '*' allows any): what the page's address shows, "
                                         "e.g. the machine's name when --host 0.0.0.0."),
    max_upload_mb: int = typer.Option(20, "--max-upload-mb", min=1, max=512, help="Largest upload accepted, MB."),
    queue: int = typer.Option(32, "--queue", min=1, max=10_000, help="Requests that may wait for the model; "
                              "more get 503 with Retry-After."),
    timeout: float = typer.Option(60.0, "--timeout", min=1.0, max=3600.0, help="Seconds a request may wait for "
                                  "the model before a 504."),
    read_timeout: float = typer.Option(15.0, "--read-timeout", min=1.0, max=600.0, help="Seconds a connection "
                                       "has to send its whole request."),
    device: str = typer.Option("auto", "--device", **choice(DEVICES, "Device.")),
    precision: str = inference_precision(),
) -> None:
    """Serve a model: a web page to drop an image on, and a JSON API (FastAPI; /docs describes it)."""
    _need("fastapi", "serve")
    _need("uvicorn", "serve")
    from hamcli.serve.app import LOCAL_HOSTS, create_app
    from hamcli.serve.server import bind
    from hamcli.serve.server import serve as run

    sock = bind(host, port)  # a bad address or a taken port fails here, before anything is announced
    try:
        local = host in LOCAL_HOSTS
        if not local:
            render.warn(f"listening on {host}: anyone who can reach this machine can use the model. It has no "
                        "authentication; put it behind one before exposing it")
        hosts = (*LOCAL_HOSTS, *(() if local or host in ("0.0.0.0", "::") else (host,)), *allow_host)
        app = create_app(model, max_upload=max_upload_mb * 1024 * 1024, device=device, precision=precision,
                         max_queue=queue, timeout=timeout, allowed_hosts=hosts)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        render.info(f"serving {app.version} on http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C stops); requests "
                    f"must address {', '.join(hosts)}" + ("" if allow_host else " (--allow-host adds names)"))
        render.notice()
        run(app, sock, read_timeout)
    finally:
        sock.close()


def export(
    model: Optional[str] = typer.Argument(None, help="Run name or folder, checkpoint file, or bundled (default: "
                                          "the run finished last)."),
    fmt: str = typer.Option("onnx", "--format", "-f", **choice(("onnx",), "Export format.")),
    output: Path = typer.Option(..., "--output", "-o", help="The file to write, e.g. model.onnx."),
    check_images: Optional[Path] = typer.Option(None, "--check-images", help="A folder of images to check the "
                                                "export on (default: images of the run's test split, else "
                                                "the bundled samples)."),
) -> None:
    """Export a model to ONNX, checked against the torch model on real images before it is written.

    The graph takes any batch size; its metadata holds the classes, input size, mean and std."""
    _need("onnx", "onnx")
    _need("onnxruntime", "onnx")
    from hamcli.serve.onnx import export_onnx

    report = export_onnx(model, output, check_images)
    render.info(f"wrote {report['path']} ({report['bytes'] / 1e6:.1f} MB); onnxruntime and torch agree on "
                f"{report['images']} images: largest probability difference {report['max_abs_diff']:.1e}, "
                "the same top class on every one")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(export)
