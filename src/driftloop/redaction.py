"""Which config keys hold secrets and how a URL's secrets are masked: the part of secret
redaction that the configuration model (its error messages) and the logs
(:mod:`driftloop.logs`) both need, kept in the core so that neither imports the other."""

from __future__ import annotations

import re

REDACTED = "***"

_SECRET_FIELDS = re.compile(r"(url|token|secret|password|key|authorization)$", re.IGNORECASE)
_PUBLIC = {"public_url", "api_url"}
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(@)")
_SECRET_QUERY = re.compile(
    r"([?&][^=&#\s]*(?:password|passwd|secret|token|key|signature|sig|credential)"
    r"[^=&#\s]*=)[^&#\s]+",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a config key holds a secret (``webhook_url``, ``token``, ``secret``, ``api_key``,
    ``password`` ...; not ``public_url`` or ``api_url``)."""
    return bool(_SECRET_FIELDS.search(key)) and key not in _PUBLIC


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:PASSWORD@host``) and the
    values of secret-looking query parameters (``?token=``, ``&access_key=`` ...) as ``***``."""
    text = _URL_PASSWORD.sub(lambda match: match.group(1) + REDACTED + match.group(2), text)
    return _SECRET_QUERY.sub(lambda match: match.group(1) + REDACTED, text)
