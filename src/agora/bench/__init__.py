"""`agora bench`: a load generator that talks to any CQL cluster through the real cassandra-driver.

A client only: nothing here imports Agora's protocol code. `stats` holds latency histograms and
the per-100 ms timeline, `keys` the key choosers, `worker` the per-process driver loop.
"""
