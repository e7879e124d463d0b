"""The one rule for secrets: none leaves the configuration.

Credentials live in the configuration's own fields (``api_key``,
``password``, webhook ``headers``) and are only ever put into the requests
that need them. Everything else (error messages, logs, metrics, the
dashboard, files) may name a URL, so a URL is made safe where it enters:

- ``split_userinfo`` takes ``user:password@`` out of a URL (the
  configuration keeps the two apart and sends them as HTTP Basic auth);
- ``redact_url`` is a URL as it may be shown: userinfo as ``***@`` and the
  values of query parameters that look like secrets (``token``, ``key``,
  ``sig``, ...) as ``***``;
- ``redact_text`` does that to every URL in a text and masks given secret
  strings wherever they appear (for texts built from raw input, such as
  validation errors);
- ``basic_authorization`` is how credentials kept apart are sent.

All of it runs when a configuration is read, never per request.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "basic_authorization",
    "is_secret_name",
    "redact_text",
    "redact_url",
    "split_userinfo",
    "url_secrets",
]

#: What a secret is replaced by.
MASK = "***"

# Names of fields and query parameters that hold secrets: exact (lower
# case, "-" read as "_"), or containing one of the fragments.
_SECRET_NAMES = frozenset(
    {
        "key",
        "api_key",
        "apikey",
        "access_key",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "pass",
        "passwd",
        "pwd",
        "sig",
        "sha256",
        "headers",
    }
)
_SECRET_FRAGMENTS = ("token", "secret", "password", "signature", "api_key", "apikey", "session")

# scheme://userinfo@ : userinfo is anything up to the first "@" that comes
# before the authority ends ("/", "?", "#", whitespace or a quote).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s'\"<>]*@")
# name=value in a query string (after "?", "&" or ";"), the value up to its end.
_QUERY_PARAM = re.compile(r"(?P<head>[?&;](?P<name>[A-Za-z0-9_.\-]+)=)[^&;#\s'\"<>]*")


def is_secret_name(name: str) -> bool:
    """Whether a field or query parameter of this name holds a secret."""
    name = name.lower().replace("-", "_")
    return name in _SECRET_NAMES or any(part in name for part in _SECRET_FRAGMENTS)


def basic_authorization(username: str | None, password: str | None) -> str | None:
    """The HTTP Basic ``Authorization`` value of a user and password
    (UTF-8, RFC 7617); None when neither is given."""
    if username is None and password is None:
        return None
    pair = f"{username or ''}:{password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without userinfo, user, password)``, user and password
    percent-decoded; ``(url, None, None)`` when it has none (the URL is
    then returned exactly as given)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), (unquote(password) if colon else None)


def url_secrets(url: str) -> list[str]:
    """The secrets in a URL: its userinfo's password and the values of its
    secret-looking query parameters (what ``redact_url`` masks)."""
    try:
        parts = urlsplit(url)
        _, _, password = split_userinfo(url)
    except ValueError:  # not a URL
        return []
    found = [password] if password else []
    found += [v for k, v in parse_qsl(parts.query) if v and is_secret_name(k)]
    return found


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """A URL as it may be shown: ``http://***@host:1/x?token=***``; without
    ``keep_path``, only its origin and ``/***`` (for URLs whose path is
    itself a secret, as a webhook's often is)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL (a bad IPv6 host): mask what looks secret
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    if not keep_path:
        hidden = parts.path not in ("", "/") or parts.query or parts.fragment
        return urlunsplit((parts.scheme, netloc, "/" + MASK if hidden else parts.path, "", ""))
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(name) for name, _ in pairs):
            query = urlencode(
                [(name, MASK if is_secret_name(name) else value) for name, value in pairs],
                safe="*",
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_param(match: re.Match[str]) -> str:
    return match["head"] + MASK if is_secret_name(match["name"]) else match[0]


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL's userinfo and secret-looking query values
    masked, and every one of ``secrets`` (empty ones ignored) too."""
    text = _USERINFO.sub(lambda m: m["scheme"] + MASK + "@", text)
    text = _QUERY_PARAM.sub(_mask_param, text)
    # Longest first: a secret that contains another is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
