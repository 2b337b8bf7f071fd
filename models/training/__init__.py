"""Workstation-side model tools (the ``train`` extra: scikit-learn, skl2onnx, onnx).

data.py (inputs -> feature rows), detectors.py (fit, prune, distill), export.py (ONNX graphs),
compress.py (int8, measurement, quality gate, selection), train.py (the whole `model train`).
The agent daemon never imports this package.
"""
