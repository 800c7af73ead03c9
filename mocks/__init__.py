"""Stand-ins for the outside systems (bank, carrier): they talk to us only over HTTP."""
