"""Points (积分): the two-currency ledger, lots, earning rules, expiry and settlement."""
