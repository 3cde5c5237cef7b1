"""Bundled `evaluate` metric module folder (load with ``trajtok_hf.metrics.load_metric("video_text_retrieval")``)."""
