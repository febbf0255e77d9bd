"""Container logs: an embedded store (`store.py`), the collector that fills it from the engine
(`collector.py`), per-project retention (`retention.py`) and what the API asks of them (`service.py`)."""
