"""Dealers: the directory, territories, the ZIP routing table and (later) the dealer lead API."""
