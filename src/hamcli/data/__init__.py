"""The data stage: sources, download, import, metadata, splits, decoding and the prepared cache."""
