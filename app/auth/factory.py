"""The access-control adapters the settings describe: the claim mapping, the token verifier and
the embedded issuer (read by the entry points and the composition root, like the storage
factory)."""

from app.auth.keys import LocalSigningKey, OidcKeys
from app.auth.principal import ClaimMapping, Permission
from app.auth.verify import RevocationCheck, TokenIssuer, TokenVerifier
from app.config import AuthSettings, Settings

__all__ = ["build_issuer", "build_mapping", "build_verifier"]


def build_mapping(auth: AuthSettings) -> ClaimMapping:
    """How tokens' claims become permissions and grants."""
    values: dict[str, Permission] = {}
    for permission, names in (
        (Permission.READ, auth.read_values),
        (Permission.WRITE, auth.write_values),
        (Permission.DELETE, auth.delete_values),
        (Permission.ADMIN, auth.admin_values),
    ):
        values.update(dict.fromkeys(names, permission))
    return ClaimMapping(
        permission_claims=tuple(auth.permission_claims),
        values=values,
        study_claim=auth.study_claim,
        patient_claim=auth.patient_claim,
    )


def build_issuer(settings: Settings) -> TokenIssuer:
    """The embedded issuer (creates the signing key in ``data_dir/auth`` on first use)."""
    key, _created = LocalSigningKey.load_or_create(settings.data_dir)
    return TokenIssuer(key, settings.auth.local_issuer, settings.auth.audience)


def build_verifier(
    settings: Settings, *, revocations: RevocationCheck | None = None
) -> TokenVerifier:
    """The verifier the settings describe (creates the embedded key on first use); with
    ``revocations``, it refuses the tokens on that deny list."""
    auth = settings.auth
    local = LocalSigningKey.load_or_create(settings.data_dir)[0] if auth.local_key else None
    oidc = (
        OidcKeys(
            auth.oidc_issuer,
            jwks_uri=auth.oidc_jwks_uri,
            allow_http=auth.oidc_allow_http,
            cache_seconds=auth.jwks_cache_seconds,
            min_refresh_seconds=auth.jwks_min_refresh_seconds,
        )
        if auth.oidc_issuer
        else None
    )
    return TokenVerifier(
        audience=auth.audience,
        mapping=build_mapping(auth),
        local_key=local,
        local_issuer=auth.local_issuer,
        oidc=oidc,
        oidc_audience=auth.oidc_audience,
        oidc_algorithms=auth.oidc_algorithms,
        leeway_seconds=auth.leeway_seconds,
        max_token_bytes=auth.max_token_bytes,
        revocations=revocations,
    )
