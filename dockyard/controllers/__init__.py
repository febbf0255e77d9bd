"""Reconcilers: level-triggered loops that move what runs on the engine towards the store."""
