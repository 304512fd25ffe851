"""API keys and roles: who may call the dealer, compliance and admin APIs."""
