"""Model files of trajtok_hf.

This folder is flat on purpose: ``save_pretrained`` of a model registered with ``register_for_auto_class`` copies its
modeling file and the files it imports *relatively from this folder*, so every file a saved model needs lives here,
with a unique name, and imports only torch/transformers/numpy/scipy and its siblings.
"""
