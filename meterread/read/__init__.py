"""The nightly read path: plan, fetch + preprocess, rows, validate, sink, state, lease, runner, fan-out."""
