"""Distributed tracing (docs/tracing.md): W3C trace context read and written
(context.py), and each worker's record of the spans it sampled (recorder.py),
sent to the control process with its reports, which exports them
(control/traces.py). No I/O here. May import config only."""
