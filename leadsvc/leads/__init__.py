"""The lead: one row per person who signed up, keyed by their normalised email address."""
