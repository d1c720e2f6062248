"""OpenAI's Files API: uploads for batches and the files the batch worker writes, per API key.

`FileStore` (store.py) is what other packages use; routes.py is its HTTP face.
"""
