"""Who may change alerts on the live page: the users file (TOML, ``configs/users.example.toml``),
Argon2id password hashes (argon2-cffi, RFC 9106 parameters of its ``PasswordHasher``), and
the session: a signed cookie (Starlette's SessionMiddleware, itsdangerous) holding the user
name, an issued-at time checked against the session length, and a CSRF token bound to it.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
import tomllib
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("inspector",)
"""Roles that may acknowledge and resolve alerts."""

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
"""Verified against when the user is unknown, so an unknown name costs the same time as a
wrong password."""


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str = dataclasses.field(repr=False)


def hash_password(password: str) -> str:
    """The Argon2id hash (PHC string ``$argon2id$…``) of ``password``."""
    if not password:
        raise ValueError("the password is empty")
    return _hasher.hash(password)


def load_users(path: str | Path | None) -> dict[str, User]:
    """The users of a TOML file ``[[users]] name, role, password_hash``; {} for None.
    ValueError naming the entry for a bad one."""
    if path is None:
        return {}
    with open(path, "rb") as f:
        data = tomllib.load(f)
    users = {}
    for i, u in enumerate(data.get("users", [])):
        where = f"{path}: [[users]] #{i + 1}"
        if not isinstance(u, dict) or not all(isinstance(u.get(k), str) and u.get(k)
                                               for k in ("name", "role", "password_hash")):
            raise ValueError(f"{where} needs name, role and password_hash (text)")
        if u["role"] not in ROLES:
            raise ValueError(f"{where} role {u['role']!r}: one of {', '.join(ROLES)}")
        if not u["password_hash"].startswith("$argon2id$"):
            raise ValueError(f"{where} password_hash is not an Argon2id hash; make one with "
                             "`tingbao serve --hash-password`")
        if u["name"] in users:
            raise ValueError(f"{where} name {u['name']!r} appears twice")
        users[u["name"]] = User(u["name"], u["role"], u["password_hash"])
    return users


def verify(users: dict[str, User], name: str, password: str) -> User | None:
    """The user when ``password`` matches their hash, else None; an unknown name does the
    same work as a wrong password."""
    user = users.get(name)
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


def start_session(session: dict, user: User) -> None:
    """Sign ``user`` in: name, role, issued-at (s) and a fresh CSRF token."""
    session.clear()
    session.update(user=user.name, role=user.role, iat=int(time.time()),
                   csrf=secrets.token_urlsafe(24))


def current_user(session: dict, users: dict[str, User], max_age_s: float) -> User | None:
    """The signed-in user, or None when not signed in, the session is older than
    ``max_age_s`` (it is cleared then) or the user is no longer in the file."""
    name, iat = session.get("user"), session.get("iat")
    if not isinstance(name, str) or not isinstance(iat, int):
        return None
    age = time.time() - iat
    user = users.get(name)
    if age > max_age_s or age < -60 or user is None:
        session.clear()
        return None
    return user


def csrf_ok(session: dict, token: str | None) -> bool:
    """Whether ``token`` is the session's CSRF token (constant-time comparison)."""
    expected = session.get("csrf")
    return isinstance(expected, str) and isinstance(token, str) and \
        hmac.compare_digest(expected.encode(), token.encode())
