"""kopf: the only place it is imported. Registrations and the operator's entry."""
