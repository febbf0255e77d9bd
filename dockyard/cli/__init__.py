"""The `dockyard` command line. Talks only to the REST API, like kubectl."""
