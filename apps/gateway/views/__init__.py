"""The gateway's HTTP edges, one blueprint per module: auth, proxy, docs."""
