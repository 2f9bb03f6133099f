"""Congestion-control policy: ``congestion_control: auto``'s rule."""
