"""leadsvc: the service behind the "Stay In the Loop" newsletter form."""
