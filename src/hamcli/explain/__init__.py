"""Explaining predictions: class activation maps (Grad-CAM and kin) and their overlays."""
