"""Policies as data: who may do what (permissions), what may run (security), how much (quota)."""
