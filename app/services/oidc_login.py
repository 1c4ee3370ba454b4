"""Signing in with the configured OpenID Connect issuer (issue 22, point 1): a hospital's
Keycloak or Entra ID users sign in without a local account, and get this server's own session.

:meth:`OidcLoginService.begin` makes the sign-in's secrets (``state``, ``nonce``, the PKCE code
verifier) and seals them, with where to go afterwards, into a value the browser keeps in a
short-lived cookie (signed by the embedded key, for this purpose only): the callback is then
checked against the browser that started it, with no server state, on any replica.

:meth:`OidcLoginService.complete` checks the callback (the ``state`` is the cookie's), trades
the code for tokens, verifies the ID token (:class:`~app.auth.oidc.OidcClient`), and maps its
claims to permissions with the settings' permission claims, the same mapping the API applies to
the issuer's access tokens (whose permissions are added when the access token is a JWT the API
would accept). A user whose claims grant nothing, or only some studies (a scoped grant), gets no
session. Successes are audited as ``login``, failures as ``login-failure`` with the reason.
"""

import hmac
from dataclasses import dataclass
from typing import Any, Final

from app.auth.oidc import OidcClient, OidcError, new_code_verifier, random_token
from app.auth.principal import ClaimMapping, Permission
from app.auth.verify import InvalidToken, TokenVerifier
from app.services.audit import AuditLog, Outcome
from app.services.sessions import Session, SessionService

__all__ = ["OidcLoginFailed", "OidcLoginService", "SignInStarted"]

PURPOSE: Final = "oidc-login"
#: how long a sign-in at the issuer may take
TRANSACTION_SECONDS: Final = 600
#: the claims shown as the user's name, first present first
_NAME_CLAIMS: Final = ("name", "preferred_username", "email", "sub")
_MAX_NAME: Final = 200


class OidcLoginFailed(Exception):
    """The sign-in did not complete. ``message`` is for the person, ``reason`` for the audit
    trail (with ``subject`` once the issuer said who it is)."""

    def __init__(self, message: str, reason: str, *, subject: str | None = None) -> None:
        super().__init__(reason)
        self.message = message
        self.reason = reason
        self.subject = subject


@dataclass(frozen=True, slots=True)
class SignInStarted:
    """Where to send the browser, and the sealed sign-in it keeps meanwhile."""

    url: str
    transaction: str


AGAIN: Final = "The sign-in could not be completed. Please try again."


class OidcLoginService:
    """The issuer's sign-in, ending in a session of ours."""

    def __init__(
        self,
        client: OidcClient,
        mapping: ClaimMapping,
        sessions: SessionService,
        audit: AuditLog,
        *,
        access_tokens: TokenVerifier | None = None,
        label: str = "single sign-on",
    ) -> None:
        self.client = client
        self._mapping = mapping
        self._sessions = sessions
        self._audit = audit
        self._access_tokens = access_tokens
        self.label = label

    async def begin(self, *, next_path: str, redirect_uri: str) -> SignInStarted:
        """Start a sign-in; :class:`OidcLoginFailed` when the issuer cannot be reached."""
        try:
            metadata = await self.client.metadata()
        except OidcError as exc:
            raise OidcLoginFailed(
                f"{self.label} cannot be reached now. Please try again later.", str(exc)
            ) from exc
        state, nonce, verifier = random_token(), random_token(), new_code_verifier()
        transaction = self._sessions.signer.seal(
            PURPOSE,
            {
                "state": state,
                "nonce": nonce,
                "verifier": verifier,
                "next": next_path,
                "redirect_uri": redirect_uri,
            },
            TRANSACTION_SECONDS,
        )
        url = self.client.authorization_url(
            metadata, redirect_uri=redirect_uri, state=state, nonce=nonce, code_verifier=verifier
        )
        return SignInStarted(url, transaction)

    async def complete(
        self,
        transaction: str | None,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        source: str | None,
        issuer: str | None = None,
    ) -> tuple[Session, str]:
        """The session of a completed sign-in and where to go; :class:`OidcLoginFailed`
        otherwise (audited). ``issuer`` is the callback's ``iss`` parameter (RFC 9207), when the
        issuer sends one."""
        try:
            return await self._complete(
                transaction, state=state, code=code, error=error, source=source, issuer=issuer
            )
        except OidcLoginFailed as failed:
            await self._audit.record(
                action="login-failure",
                outcome=Outcome.DENIED,
                status=401,
                actor=failed.subject,
                source=source,
                detail=f"OpenID Connect sign-in: {failed.reason}"[:500],
            )
            raise

    async def _complete(
        self,
        transaction: str | None,
        *,
        state: str | None,
        code: str | None,
        error: str | None,
        source: str | None,
        issuer: str | None,
    ) -> tuple[Session, str]:
        if not transaction:
            raise OidcLoginFailed(AGAIN, "no sign-in in progress in this browser")
        try:
            started = self._sessions.signer.unseal(PURPOSE, transaction)
        except ValueError as exc:
            raise OidcLoginFailed(AGAIN, str(exc)) from None
        expected = started.get("state")
        if (
            not state
            or not isinstance(expected, str)
            or not hmac.compare_digest(state.encode(), expected.encode())
        ):
            raise OidcLoginFailed(AGAIN, "the state is not this browser's sign-in's")
        if issuer is not None and issuer.rstrip("/") != self.client.issuer.rstrip("/"):
            # RFC 9207: a response from another issuer (a mix-up attack) is not ours to take
            raise OidcLoginFailed(AGAIN, f"the callback names another issuer: {issuer[:200]!r}")
        if error:
            cancelled = error == "access_denied"
            message = "The sign-in was cancelled." if cancelled else AGAIN
            raise OidcLoginFailed(message, f"the issuer answered {error[:100]}")
        if not code:
            raise OidcLoginFailed(AGAIN, "the callback has no code")
        try:
            tokens = await self.client.exchange(
                code,
                redirect_uri=str(started["redirect_uri"]),
                code_verifier=str(started["verifier"]),
            )
            claims = await self.client.verify_id_token(tokens.id_token, nonce=str(started["nonce"]))
        except OidcError as exc:
            raise OidcLoginFailed(AGAIN, str(exc)) from exc
        subject = str(claims["sub"])
        permissions = await self._permissions(claims, tokens.access_token, subject)
        name = _name(claims)
        session = await self._sessions.start(
            subject, permissions, name=name, idp=self.client.issuer
        )
        await self._audit.record(
            action="login",
            outcome=Outcome.SUCCESS,
            actor=subject,
            source=source,
            detail=f"OpenID Connect sign-in ({self.client.issuer})",
        )
        return session, str(started.get("next") or "/")

    async def _permissions(
        self, claims: dict[str, Any], access_token: str | None, subject: str
    ) -> frozenset[Permission]:
        principal = self._mapping.principal(claims)
        if principal.restricted:
            raise OidcLoginFailed(
                "Your account may only see some studies, which the web pages do not offer.",
                "the ID token grants only some studies or patients",
                subject=subject,
            )
        permissions = set(principal.permissions)
        if access_token is not None and self._access_tokens is not None:
            try:
                api = await self._access_tokens.verify(access_token)
            except InvalidToken:
                api = None  # an opaque token, or one for another audience: the ID token's only
            if api is not None and api.subject == subject and not api.restricted:
                permissions |= api.permissions
        if not permissions:
            raise OidcLoginFailed(
                "Your account has no access to Lightbox yet. Ask an administrator for a role.",
                "no permission in the claims",
                subject=subject,
            )
        return frozenset(permissions)


def _name(claims: dict[str, Any]) -> str:
    for claim in _NAME_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value.strip():
            return value.strip()[:_MAX_NAME]
    return "?"
