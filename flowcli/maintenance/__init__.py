"""Keeping a database healthy for years: retention, pruning, archives, backups, space.

``selection`` decides which sessions a prune takes; ``archive`` writes, verifies and
reads the gzip JSON-lines archive; ``prune`` archives then deletes in short batches;
``restore`` puts archived sessions back; ``backup`` copies and restores whole
databases; ``safety_copy`` is the verified copy taken before the doctor or a restore
rewrites one; ``space`` vacuums and measures; ``retention`` is the policy from the config
file. The CLI (flowcli.cli.db) only parses, calls one of these and renders.
"""
