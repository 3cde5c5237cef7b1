PY ?= python

.PHONY: demo test

demo:
	$(PY) examples/retrieval.py

test:
	$(PY) -m pytest tests -q -p no:cacheprovider
