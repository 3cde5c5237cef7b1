PY ?= python

.PHONY: demo test

demo:
	$(PY) examples/tokenize_video.py

test:
	$(PY) -m pytest tests -q -p no:cacheprovider
