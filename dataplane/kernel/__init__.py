"""Kernel TCP control: TCP_INFO samples, congestion-control algorithms
(TCP_CONGESTION, our BPF struct_ops algorithms through libbpf), the AIMD
pacer on SO_MAX_PACING_RATE, and Transport, which applies a backend's choice
to its sockets inside a worker.

May import nothing from dataplane at run time (configuration types only for
type hints); dataplane.config imports the algorithm catalogue from here.
"""
