"""The live operator: cache of what was seen, reconciliation, backend probes."""
