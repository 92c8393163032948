"""Robodistill environments for other training libraries (each module needs its library: an optional extra)."""
