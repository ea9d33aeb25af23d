"""The one redaction step: every text that leaves an adapter (audit details, quarantine reasons, exception messages,
logs, HTTP answers) passes through ``redact`` before it is stored, logged or answered.

Two nets, because neither alone is enough:

- **by value** — every secret the process was configured with (each ``SecretStr`` of the settings, each channel's
  URL/password/key setting, whatever an adapter registers with ``register_secret``) is replaced wherever it appears,
  also URL-encoded. A receiver that echoes its own webhook URL in an error body is caught this way.
- **by shape** — what looks like a credential although nobody registered it: webhook URL paths of Teams (incoming
  webhooks and Workflows), Slack hooks, Logic Apps / Power Automate and Discord; query signatures and tokens
  (``sig=``, ``code=``, ``token=``, ``key=`` ...); ``Bearer``/``Basic`` credentials; JWTs; connection-string keys
  (``AccountKey=``, ``SharedAccessKey=``, ``AccessKey=``, ``Password=``); ``password=``-style pairs; user:password in
  a URL; Azure DevOps PATs; GitHub tokens (``ghs_``, ``ghp_``, ``github_pat_``).

Every ``SecretStr`` setting is registered when the engine is built (``register_settings``: the PAT, the GitHub App
key and token, storage and topic keys ...); an adapter that reads a secret from elsewhere (the notify channels' named
settings) calls ``register_secret`` with it — one function, so a new adapter cannot forget a second registry.
``install_log_redaction`` makes every log record — ours and the SDKs' — go through the same step.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from pydantic import SecretStr

MASK = "[redacted]"
_MIN_SECRET = 6  # shorter values would mask ordinary words ("true", a port): such a value is no secret anyway
_PAT_LENGTH = 52  # an Azure DevOps personal access token: 52 characters of base32
_URL_PART = 16  # a path segment or query value this long in a secret URL is a credential ("/hook" is not)

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_by_value: re.Pattern[str] | None = None

#: (pattern, replacement, triggers): a pattern runs only on text that holds one of its triggers (lowercased), so
#: ordinary text — most of it — costs a few substring tests instead of a dozen regex passes.
_SHAPES: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    # Webhook URLs whose path is the credential: keep the host, drop the rest.
    (re.compile(r"(?i)(https?://[\w.-]*(?:webhook\.office\.com|office\.com/webhook|outlook\.office\.com)"
                r"(?::\d+)?)/[^\s\"'<>]*"), r"\1/" + MASK, ("office.com",)),
    (re.compile(r"(?i)(https?://hooks\.slack\.com(?::\d+)?)/[^\s\"'<>]*"), r"\1/" + MASK, ("hooks.slack",)),
    (re.compile(r"(?i)(https?://(?:[\w-]+\.)*discord(?:app)?\.com/api/webhooks)/[^\s\"'<>]*"), r"\1/" + MASK,
     ("discord",)),
    # Query signatures and tokens (Workflows / Logic Apps ``sig=``, Functions ``code=``, SAS ``sig=``, api keys).
    (re.compile(r"(?i)([?&;](?:sig|signature|code|token|access_token|api[-_]?key|apikey|key|secret|password|pwd|"
                r"client_secret|subscription-key)=)[^&\s\"'<>#]+"), r"\1" + MASK, ("=",)),
    (re.compile(r"(?i)((?<![\w-])(?:sig|signature|access_token|client_secret)=)[^&\s\"'<>#]+"), r"\1" + MASK,
     ("sig", "access_token", "client_secret")),
    # user:password@ in a URL.
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@\"'<>]+:)[^@\s/\"'<>]+@"), r"\1" + MASK + "@", ("@",)),
    # Authorization header values.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{12,}"), r"\1 " + MASK, ("bearer",)),
    (re.compile(r"(?i)\b(basic)\s+[A-Za-z0-9+/]{16,}={0,2}"), r"\1 " + MASK, ("basic",)),
    # JWTs (Entra ID access tokens).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), MASK, ("eyj",)),
    # Connection strings and key=value / key: value credentials.
    (re.compile(r"(?i)\b((?:account|shared[-_ ]?access|access|primary|secondary)[-_ ]?key|"
                r"sharedaccesssignature|password|passwd|pwd|secret|client[-_]?secret|api[-_]?key|token|pat)"
                r"(\"?\s*[=:]\s*\"?)[^\s;,&\"'<>]+"), r"\1\2" + MASK,
     ("key", "signature", "password", "passwd", "pwd", "secret", "token", "pat")),
    # GitHub tokens (installation ghs_, personal ghp_/github_pat_, OAuth gho_ ...), minted per hour: by shape.
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"), MASK, ("gh", "github_pat")),
    # Azure DevOps personal access tokens (52 characters of base32).
    (re.compile(rf"\b[a-z2-7]{{{_PAT_LENGTH}}}\b"), MASK, ()),
)
#: Every trigger at once: most texts hold none and are shorter than a PAT, and one search clears them.
_ANY_TRIGGER = re.compile("|".join(re.escape(t) for _, _, triggers in _SHAPES for t in triggers))
#: Each trigger with the shapes it calls for: a text that holds one is tested with ``in`` for every trigger (a few
#: µs less than one regex search per shape), and only the shapes called for run.
_CALLS_FOR: dict[str, frozenset[int]] = {
    trigger: frozenset(i for i, (_, _, triggers) in enumerate(_SHAPES) if trigger in triggers)
    for _, _, triggers in _SHAPES for trigger in triggers
}


def register_secret(*values: str | SecretStr | None) -> None:
    """Add configured secrets to the by-value net (idempotent; ``None`` and short values are ignored)."""
    global _secrets, _by_value
    texts = {v.get_secret_value() if isinstance(v, SecretStr) else v for v in values}
    texts |= {part for t in texts if isinstance(t, str) for part in _url_credentials(t)}
    fresh = {t for t in texts if isinstance(t, str) and len(t) >= _MIN_SECRET} - _secrets
    if not fresh:
        return
    with _lock:
        _secrets = _secrets | fresh
        forms = {form for s in _secrets for form in (s, quote(s, safe=""), quote_plus(s), quote(s, safe="/:"))}
        # Longest first, so a secret containing another is masked whole.
        _by_value = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def _url_credentials(value: str) -> set[str]:
    """The parts of a secret URL that are its credential on their own (a receiver may echo just the ``sig`` value
    or the Slack token path): long path segments and query values, and the password of user:password@."""
    if not value.lower().startswith(("http://", "https://")):
        return set()
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return set()
    found = {segment for segment in parts.path.split("/") if len(segment) >= _URL_PART}
    found |= {v for _, v in parse_qsl(parts.query) if len(v) >= _URL_PART}
    if password:
        found.add(password)
    return found


def register_settings(settings: Any) -> None:
    """Every ``SecretStr`` field of the settings object (the storage connection string, the PAT, topic key ...)."""
    register_secret(*(v for v in vars(settings).values() if isinstance(v, SecretStr)))


def redact(text: str) -> str:
    """``text`` with every registered secret and every credential-shaped substring replaced by ``[redacted]``."""
    if not text:
        return text
    pattern = _by_value
    if pattern is not None:
        text = pattern.sub(MASK, text)
    lowered = text.lower()
    long = len(text) >= _PAT_LENGTH
    if _ANY_TRIGGER.search(lowered) is None:
        if not long:
            return text
        due: set[int] = set()
    else:
        due = {i for trigger, shapes in _CALLS_FOR.items() if trigger in lowered for i in shapes}
    for i, (shape, replacement, triggers) in enumerate(_SHAPES):
        # A search before the substitution: most texts a shape is tried on hold nothing of it, and a search that
        # finds nothing costs less than a substitution that replaces nothing.
        if (i in due or (long and not triggers)) and shape.search(text):
            text = shape.sub(replacement, text)
    return text


def redact_all(values: Iterable[str]) -> list[str]:
    return [redact(v) for v in values]


def redact_tree(value: Any) -> Any:
    """Every string inside a JSON-like value (audit action lists, result data)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v) for v in value]
    return value


_installed = False


def install_log_redaction() -> None:
    """Every log record, from any logger, carries a redacted message and traceback (idempotent).

    A record factory rather than a handler filter: the Functions host and OpenTelemetry attach their own handlers,
    and a filter on the ``mlreactor`` logger would not see the SDKs' records.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
