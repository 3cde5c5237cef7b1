"""Stand-in for transformers' ``tests/generation/test_utils.py`` (not shipped in the source distribution).

``test_modeling_common`` imports ``GenerationTesterMixin`` from it, and checks that the tester of a model that can
``generate`` inherits it. This empty mixin satisfies both; it runs no generation test. TrajVLM's generation paths
are covered by the repository's own table-driven tests against greedy decoding of the same model.
"""


class GenerationTesterMixin:
    """Empty: the real mixin's generation tests are not part of the source distribution."""
