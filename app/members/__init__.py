"""Members, WeChat identities, consent, vehicles and ownership."""
