"""Campaigns: enrollment QR codes (order, advisor, campaign) and red-packet sign-up campaigns."""
