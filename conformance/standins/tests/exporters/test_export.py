"""Stand-in for transformers' ``tests/exporters/test_export.py`` (not shipped in the source distribution).

``test_modeling_common.ModelTesterMixin`` derives from ``ExportTesterMixin``; the real mixin drives torch.export,
ONNX, OpenVINO, ExecuTorch and TensorRT exporters. This empty mixin provides the base class and runs no export
test: exporting is outside this project's scope.
"""


class ExportTesterMixin:
    """Empty: the real mixin's exporter tests are not part of the source distribution."""
