"""Container metrics: the embedded time-series store (tsdb), the collector that reads cgroups,
and the provider the API queries."""
