"""Agora: a leaderless replicated database (Dynamo/Cassandra family)."""
