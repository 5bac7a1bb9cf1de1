"""The counted record: every transaction that moves a count or the ledger, and what the
public may read of it."""
