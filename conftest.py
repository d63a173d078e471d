"""Run before any test module or docstring example is imported (tests/ and xmargin/ alike)."""

import importlib.util
import os

# Keras picks its backend when first imported, TensorFlow unless told; xmargin.keras runs on
# its torch and JAX backends (tests/test_keras.py runs each in a subprocess of its own)
os.environ.setdefault("KERAS_BACKEND", "torch")

# xmargin.keras imports Keras 3 at import time: its doctests are collected where Keras is
# installed (CI installs it; the image of a lent GPU machine has none)
collect_ignore = [] if importlib.util.find_spec("keras") else ["xmargin/keras.py"]
