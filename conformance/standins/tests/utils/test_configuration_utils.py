"""Stand-in for transformers' ``tests/utils/test_configuration_utils.py`` (not shipped in the source distribution).

``test_configuration_common.ConfigTester`` imports ``config_common_kwargs`` from it: one non-default value for every
attribute of ``PreTrainedConfig``, which ``check_config_arguments_init`` sets and reads back. The values are those of
the upstream file for transformers 5.x, whose ``PreTrainedConfig`` keeps only these public attributes (the upstream
test checks that the dictionary is complete; ``test_harness.py`` here does the same against the installed version).
"""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
