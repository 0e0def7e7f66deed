"""The open-banking sandbox: a sample partner app registered as a partner would, with its key file.

Used by ``smartbank openbanking sandbox`` and by the demo bank (``smartbank demo`` and the first
``python3 dev.py run``), which registers one sample app next to the demo data. Lives at the command
layer: it builds the runtime and calls the open-banking service like any partner's registration.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from joserfc.jwk import ECKey

from smartbank.identity.model import ClientInfo
from smartbank.platform.settings import Settings
from smartbank.web.app import Runtime

DEFAULT_NAME: Final = "Sandbox budget app"
DEFAULT_REDIRECT_URI: Final = "http://localhost:8765/callback"
#: Where the demo keeps its sample app's key file, under the data folder.
DEMO_KEY_FILE: Final = "sandbox-partner.json"

GUIDE = """
Sandbox partner app registered: {client_id} ({name})
Its private key and settings: {path} (keep it private; it is the app's only credential)

Run the whole flow (start the bank first: python3 dev.py run; log in as a customer with MFA set up):

  .venv/bin/python examples/openbanking_flow.py --config {path}
  .venv/bin/python examples/openbanking_flow.py --config {path} --pay-to <account number> --amount 1.00

The script discovers {issuer}/.well-known/oauth-authorization-server, creates an account-access
consent with a client-credentials token (private_key_jwt), pushes the authorization request (PAR, PKCE
S256) and prints the authorize URL. Open it, log in, choose an account, confirm with your authenticator
code, and paste the URL the browser lands on ({redirect_uri}?code=...). It exchanges the code, reads
your accounts and balances, then (with --pay-to) makes a signed domestic payment the same way.
curl steps for each call: docs/openbanking.md ("Try it").
"""


@dataclass(frozen=True, slots=True)
class SamplePartner:
    client_id: str
    name: str
    path: Path
    issuer: str
    redirect_uri: str

    def guide(self) -> str:
        return GUIDE.format(
            client_id=self.client_id,
            name=self.name,
            path=self.path,
            issuer=self.issuer,
            redirect_uri=self.redirect_uri,
        )


def register_sample_partner(
    settings: Settings,
    database_url: str,
    path: Path,
    *,
    name: str = DEFAULT_NAME,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    notification_uri: str | None = None,
) -> SamplePartner:
    """Register a sandbox app (private_key_jwt, ES256) and write its key file (mode 600) to ``path``.

    Raises :class:`smartbank.openbanking.errors.OAuth2Error` when the registration is refused.
    """
    key = ECKey.generate_key("P-256", {"use": "sig", "alg": "ES256"}, private=True)
    key.ensure_kid()
    metadata: dict[str, object] = {
        "client_name": name,
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.as_dict(private=False)]},
        "software_id": "smartbank-sandbox-sample",
    }
    if notification_uri:
        metadata["event_notification_uri"] = notification_uri

    async def register() -> str:
        runtime = Runtime.build(settings, database_url)
        try:
            registration = await runtime.openbanking.register_client(metadata, ClientInfo())
            return registration.client.client_id
        finally:
            await runtime.db.dispose()

    client_id = asyncio.run(register())
    document = {
        "issuer": settings.issuer,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "private_jwk": key.as_dict(private=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return SamplePartner(client_id, name, path, settings.issuer, redirect_uri)


def ensure_sample_partner(settings: Settings, database_url: str, path: Path) -> tuple[SamplePartner, bool]:
    """The sample app of ``path``'s key file if this bank knows it, else a new one written there.

    Returns the app and whether it was registered now.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        known = SamplePartner(
            str(document["client_id"]), DEFAULT_NAME, path, settings.issuer, str(document["redirect_uri"])
        )
    except (OSError, ValueError, KeyError):
        known = None
    if known is not None:

        async def exists() -> bool:
            runtime = Runtime.build(settings, database_url)
            try:
                return await runtime.openbanking.client_jwks(known.client_id) is not None
            finally:
                await runtime.db.dispose()

        if asyncio.run(exists()):
            return known, False
    return register_sample_partner(settings, database_url, path), True
