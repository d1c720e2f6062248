"""OpenAI's Batch API: batches of /v1/embeddings requests read from an uploaded file, run in
chunks by a worker in the gateway process, and written to output and error files.

`BatchStore` (store.py) keeps them durable; worker.py runs them; routes.py is their HTTP face.
"""
