"""Run before any test module or docstring example is imported (tests/ and xmargin/ alike)."""

import os

# Keras picks its backend when first imported, TensorFlow unless told; xmargin.keras runs on
# its torch and JAX backends (tests/test_keras.py runs each in a subprocess of its own)
os.environ.setdefault("KERAS_BACKEND", "torch")
