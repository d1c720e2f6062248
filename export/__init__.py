"""Export a local sentence-transformers checkpoint into the Triton model repository."""
