"""Several balancers as one fleet, through etcd (docs/fleet.md).

Sans-IO cores: keys.py (the key layout), shards.py (which members probe which
backend), view.py (live members and their published observations, and the
fleet's verdict on each backend). I/O: etcd.py (etcd's JSON gateway over
httpx) and member.py (this balancer's lease, watches and publications).

May import dataplane.config only; the control process wires it to health
checking and the backend set (dataplane/control/fleet.py).
"""
