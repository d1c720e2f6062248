"""The tables of the Batch API, created by `BatchStore` if missing, in SQLite or PostgreSQL
(`{serial}` and `{blob}` as gateway/database spells them).

`batches` holds each batch's object and its lease for the batch-level steps (validating, writing
the files); `batch_chunks` the ranges of lines with their state and lease; `batch_lines` every
input line of a batch in progress and, once its chunk is done, its line of the output or error
file. Timestamps are Unix seconds (DOUBLE PRECISION, so leases are exact); owners the hex of the
caller's identity.
"""

from __future__ import annotations

SCHEMA = (
    # seq orders the list (newest first) and is the `after` cursor.
    """CREATE TABLE IF NOT EXISTS batches (
        seq {serial},
        id TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        closing TEXT,
        input_file_id TEXT NOT NULL,
        model TEXT,
        metadata TEXT,
        errors TEXT,
        output_file_id TEXT,
        error_file_id TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        in_progress_at DOUBLE PRECISION,
        expires_at DOUBLE PRECISION NOT NULL,
        finalizing_at DOUBLE PRECISION,
        completed_at DOUBLE PRECISION,
        failed_at DOUBLE PRECISION,
        expired_at DOUBLE PRECISION,
        cancelling_at DOUBLE PRECISION,
        cancelled_at DOUBLE PRECISION,
        total INTEGER NOT NULL DEFAULT 0,
        completed INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        estimated_tokens INTEGER NOT NULL DEFAULT 0,
        build TEXT,
        lease_owner TEXT,
        lease_expires_at DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS batches_by_owner ON batches (owner, seq)",
    "CREATE INDEX IF NOT EXISTS batches_by_status ON batches (status)",
    """CREATE TABLE IF NOT EXISTS batch_chunks (
        batch_id TEXT NOT NULL,
        first_line INTEGER NOT NULL,
        last_line INTEGER NOT NULL,
        state TEXT NOT NULL,
        lease_owner TEXT,
        lease_expires_at DOUBLE PRECISION,
        attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (batch_id, first_line)
    )""",
    "CREATE INDEX IF NOT EXISTS batch_chunks_by_state ON batch_chunks (state)",
    # ok and record stay NULL until the line's chunk is done: 1 = the output file, 0 = errors.
    """CREATE TABLE IF NOT EXISTS batch_lines (
        batch_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        body {blob} NOT NULL,
        ok INTEGER,
        record {blob},
        PRIMARY KEY (batch_id, line)
    )""",
)
