"""trajtok_hf: TrajTok trajectory tokens as Hugging Face transformers models."""

__version__ = "0.1.0"
