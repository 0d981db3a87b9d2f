"""JWT algorithms: the names ``FLOODWALL_JWT_ALGORITHMS`` takes, and the keys each needs
(``FLOODWALL_JWT_SECRET`` for HMAC, ``FLOODWALL_JWT_JWKS_URL`` for public keys)."""

from __future__ import annotations

from typing import Any, Final

from jwt.algorithms import get_default_algorithms, has_crypto
from pydantic import SecretStr

__all__ = [
    "DEFAULT_JWKS_ALGORITHMS",
    "HMAC_KEY_BYTES",
    "PUBLIC_KEY_ALGORITHMS",
    "algorithm_names",
    "hmac_algorithms",
    "jwt_conflicts",
    "public_key_algorithms",
]

# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
HMAC_KEY_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
# Public-key algorithms need the signer's public keys: FLOODWALL_JWT_JWKS_URL.
PUBLIC_KEY_ALGORITHMS: Final = frozenset(
    {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES256K", "ES384", "ES512", "EdDSA", "Ed25519", "Ed448",
    }
)  # fmt: skip
DEFAULT_JWKS_ALGORITHMS: Final = ("RS256", "ES256", "EdDSA")
"""What an identity provider's keys verify when ``FLOODWALL_JWT_ALGORITHMS`` is not set."""
_HMAC_NAMES: Final = ", ".join(HMAC_KEY_BYTES)
_CANONICAL: Final = {name.upper(): name for name in HMAC_KEY_BYTES.keys() | PUBLIC_KEY_ALGORITHMS}

_Conflict = tuple[str, str]


def hmac_algorithms(algorithms: list[str]) -> list[str]:
    """The HMAC algorithms of ``algorithms``: those a shared secret verifies."""
    return [name for name in algorithms if name in HMAC_KEY_BYTES]


def public_key_algorithms(algorithms: list[str]) -> list[str]:
    """The public-key algorithms of ``algorithms``: those an identity provider's keys verify."""
    return [name for name in algorithms if name in PUBLIC_KEY_ALGORITHMS]


def algorithm_names(names: list[str], keys: dict[str, Any]) -> list[str]:
    """``names`` as PyJWT spells them, each once; ``keys``: the settings validated so far,
    to name the algorithms that fit them when an entry is unknown."""
    # Names are matched whatever their case (PyJWT's are case-sensitive, so "hs256" would
    # silently match no token); an unknown entry is named by position, as it may be a
    # secret pasted in the wrong place.
    algorithms: list[str] = []
    for position, name in enumerate(names, start=1):
        if name.lower() == "none":
            raise ValueError(
                "FLOODWALL_JWT_ALGORITHMS: none is refused (it admits unsigned tokens)"
            )
        known = _CANONICAL.get(name.upper())
        if known is None:
            raise ValueError(
                f"FLOODWALL_JWT_ALGORITHMS: entry {position} is not a JWT algorithm "
                f"({_algorithms_to_use(keys)})"
            )
        if known not in algorithms:
            algorithms.append(known)
    return algorithms


def _algorithms_to_use(keys: dict[str, Any]) -> str:
    """What FLOODWALL_JWT_ALGORITHMS may name, for the keys that are set."""
    public = ", ".join(DEFAULT_JWKS_ALGORITHMS)
    if keys.get("jwt_jwks_url") is None:
        return f"use {_HMAC_NAMES}"
    if keys.get("jwt_secret") is None:
        return f"use {public}"
    return f"use {public} for FLOODWALL_JWT_JWKS_URL and {_HMAC_NAMES} for FLOODWALL_JWT_SECRET"


def jwt_conflicts(
    algorithms: list[str],
    jwks_algorithms: list[str],
    jwks_url: str | None,
    secret: SecretStr | None,
) -> list[_Conflict]:
    """(field, message) for each JWT setting that cannot work with the others."""
    public = public_key_algorithms(algorithms)
    if public and jwks_url is None:
        return [
            (
                "jwt_algorithms",
                f"FLOODWALL_JWT_ALGORITHMS: {public[0]} needs the signer's public keys: set "
                f"FLOODWALL_JWT_JWKS_URL, or use {_HMAC_NAMES}",
            )
        ]
    if jwks_url is not None:
        problem = _jwks_conflict(jwks_algorithms)
        if problem is not None:
            return [problem]
    return [] if secret is None else _secret_conflicts(algorithms, secret)


def _jwks_conflict(jwks_algorithms: list[str]) -> _Conflict | None:
    if not has_crypto:
        return (
            "jwt_jwks_url",
            "FLOODWALL_JWT_JWKS_URL needs the cryptography package: "
            "pip install 'floodwall[crypto]'",
        )
    if not jwks_algorithms:
        return (
            "jwt_algorithms",
            "FLOODWALL_JWT_ALGORITHMS names no public-key algorithm, so "
            "FLOODWALL_JWT_JWKS_URL could verify no token (use RS256, ES256, EdDSA)",
        )
    supported = get_default_algorithms()
    for name in jwks_algorithms:
        if name not in supported:
            return (
                "jwt_algorithms",
                f"FLOODWALL_JWT_ALGORITHMS: {name} is not supported by the installed PyJWT",
            )
    return None


def _secret_conflicts(algorithms: list[str], secret: SecretStr) -> list[_Conflict]:
    if not algorithms:
        return [
            (
                "jwt_algorithms",
                "FLOODWALL_JWT_ALGORITHMS names no algorithm, so FLOODWALL_JWT_SECRET "
                f"could verify no token (use {_HMAC_NAMES})",
            )
        ]
    try:
        key = secret.get_secret_value().encode("utf-8")
    except UnicodeEncodeError:
        # PyJWT encodes the key as UTF-8 on every request; it would fail there instead.
        return [("jwt_secret", "FLOODWALL_JWT_SECRET is not UTF-8 text")]
    hmac = hmac_algorithms(algorithms)
    if not hmac:
        return [
            (
                "jwt_algorithms",
                "FLOODWALL_JWT_ALGORITHMS names no HMAC algorithm, so FLOODWALL_JWT_SECRET "
                f"could verify no token (add one of {_HMAC_NAMES})",
            )
        ]
    return _key_length_conflicts(hmac, key)


def _key_length_conflicts(hmac: list[str], key: bytes) -> list[_Conflict]:
    needed = max(HMAC_KEY_BYTES[name] for name in hmac)
    if len(key) >= needed:
        return []
    strictest = max(hmac, key=HMAC_KEY_BYTES.__getitem__)
    return [
        (
            "jwt_secret",
            f"FLOODWALL_JWT_SECRET is shorter than {needed} bytes, the least "
            f"{strictest} allows (RFC 7518 section 3.2)",
        )
    ]
