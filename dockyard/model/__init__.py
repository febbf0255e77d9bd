"""Resource types of Dockyard's API. Pure data and validation: no I/O here."""
