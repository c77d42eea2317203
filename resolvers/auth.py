"""Bearer tokens: HS256 JWTs with `sub`, `role` (customer|admin), `email`, `exp`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import jwt

from models.access import Actor

ROLES = ("customer", "admin")


class AuthError(Exception):
    pass


def mint_token(
    secret: str,
    *,
    sub: str,
    role: str = "customer",
    email: str | None = None,
    name: str | None = None,
    ttl: timedelta = timedelta(days=30),
) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    claims: dict[str, object] = {
        "sub": sub,
        "role": role,
        "exp": datetime.now(UTC) + ttl,
        "iat": datetime.now(UTC),
    }
    if email:
        claims["email"] = email
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm="HS256")


def actor_from_token(secret: str, token: str) -> Actor:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "role"]}
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"the token is not valid: {exc}") from None
    role, sub = claims.get("role"), claims.get("sub")
    if role not in ROLES or not isinstance(sub, str) or not sub:
        raise AuthError("the token has no valid role or subject")
    email, name = claims.get("email"), claims.get("name")
    return Actor(
        customer_id=sub,
        role=sys.intern(role),  # one of two: not a string per connection
        email=email if isinstance(email, str) else None,
        name=name if isinstance(name, str) else None,
    )


def actor_from_header(secret: str, header: str | None) -> Actor:
    if not header:
        raise AuthError("an Authorization: Bearer <token> header is required")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    return actor_from_token(secret, token.strip())
