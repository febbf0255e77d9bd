"""The REST API (FastAPI). Never imports engines: engine-backed services are injected."""
