"""The PROXY protocol v1 and v2 (header.py): sent to backends of groups with
``send_proxy``, read from trusted balancers in front with ``accept_proxy``.
No I/O; imports nothing of ours."""
