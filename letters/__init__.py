"""letters: open letters signed by verified employees, with names hidden by default."""
