"""Tiers (会员等级): policy, upgrade and yearly review."""
