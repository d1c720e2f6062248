"""Peer embedding servers, each run from its own virtual environment, for `python -m bench`."""
