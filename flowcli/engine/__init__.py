"""The flow engine: step selection, loops, conditions, responders, run_next, auto."""
