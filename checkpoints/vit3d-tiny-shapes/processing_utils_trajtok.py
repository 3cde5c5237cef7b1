"""Processor helpers shared by the trajtok_hf processors (they import only transformers, so that remote code copies
them beside the processing files)."""

from __future__ import annotations

from transformers.processing_utils import ProcessorMixin

__all__ = ["KeepAutoMapOnSaveMixin"]


class KeepAutoMapOnSaveMixin(ProcessorMixin):
    """A ``ProcessorMixin`` whose ``save_pretrained`` leaves the processor unchanged (a processor's only base, so that
    ``__mro__[1]`` is still a ``ProcessorMixin``, as transformers' processor tests assume).

    transformers sets the remote-code ``auto_map`` on the processor it saves (it is written to
    ``processor_config.json``) but drops it when loading, so without this a saved processor's ``to_dict()`` differs
    from its reloaded copy's."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        missing = object()
        previous = self.__dict__.get("auto_map", missing)
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if previous is missing:
                self.__dict__.pop("auto_map", None)
            else:
                self.auto_map = previous
