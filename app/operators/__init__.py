"""OEM and dealer back-office users (agents, supervisors, dealer member managers, operators)."""
