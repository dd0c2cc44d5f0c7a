"""Take docs/serve.png: `hamcli serve` with the bundled model, one sample uploaded, in headless Chromium.

    python scripts/serve_screenshot.py [--browser /usr/bin/chromium] [--out docs/serve.png]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

import hamcli
from hamcli.serve.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--browser", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "docs" / "serve.png")
    parser.add_argument("--image", type=Path,
                        default=min((Path(hamcli.__file__).parent / "samples" / "images").glob("*.jpg")))
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args()
    server = uvicorn.Server(uvicorn.Config(create_app("bundled"), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with sync_playwright() as p:
            chrome = p.chromium.launch(executable_path=args.browser, args=["--no-sandbox", "--disable-gpu"])
            page = chrome.new_page(viewport={"width": args.width, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#file", str(args.image))
            page.wait_for_selector("#overlay:not([hidden])", timeout=60_000)
            time.sleep(0.5)  # let the overlay image paint
            page.screenshot(path=str(args.out), full_page=True)
            chrome.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
