"""lbctl: run, check and manage an l7lb balancer."""
