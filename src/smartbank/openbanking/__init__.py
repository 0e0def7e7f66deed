"""The open-banking domain: the OAuth 2 authorization server, partner apps and consents."""
