"""Logins for customers, staff and merchants: credentials, MFA, sessions and tokens, roles, rate limits."""
