"""Serving a model: a web page and a JSON API (FastAPI), and its export to ONNX."""
