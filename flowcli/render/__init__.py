"""All terminal output: the only package that builds Rich tables, panels and trees.

Builders take plain data (dicts, dataclasses) and write results to stdout; notes and
progress go to stderr. Every stored string shown on a terminal passes through
``formatting.escaped`` (the sanitiser in safe_text, then Rich markup escaping); machine
formats keep the exact bytes. This face holds nothing: import from the module named for
what it shows.

- where output goes: ``output`` (terminal, pager, pipe), ``messages`` (stderr notes and
  warnings), ``json_output`` (``--json``/``--jsonl``), ``tables`` (tables that fit or
  stream), ``safe_text`` and ``formatting`` (one value in a cell);
- what is shown: ``flows`` (flows and roles), ``sessions``, ``runs`` (run-next, explain,
  auto), ``log_table`` and ``logs`` (executions, one log, diffs, stats, transcripts),
  ``batch``, ``worker``, ``doctor``, ``maintenance``, ``migrations``, ``config``.
"""
