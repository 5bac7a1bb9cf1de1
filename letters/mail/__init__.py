"""Mail: the backends, the outbox, and every email the site writes."""
