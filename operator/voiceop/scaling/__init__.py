"""Autoscaling on live calls and voice latency: the builtin policy, the stock baselines and a
simulator that replays call traces against them. Pure: no I/O, no clock of its own."""
