"""Customer profiles: registration with a verified phone or e-mail, KYC, tiers and payment limits."""
