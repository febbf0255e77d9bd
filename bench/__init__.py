"""Dockyard benchmarks: `python -m bench [deploy|scale|api|footprint] [--quick]` (see README.md)."""
