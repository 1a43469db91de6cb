"""Dealers (经销商) and their staff: sales advisors, service advisors, member managers."""
