"""Predictor cores: Spark-free, pandas in and pandas out, each loading its model once.

One module per kind of input (images, text, clips), with the shared model-folder, device and
runtime helpers. The Spark wrappers in :mod:`deepbatch.infer` and the ONNX export check build
them through the modality registry (:mod:`deepbatch.modality`), never by name.
"""
