"""Import/export of checkpoints from other implementations (Hugging Face transformers BLT)."""
