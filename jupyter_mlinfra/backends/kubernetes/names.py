"""Names and label values the cluster accepts, made from user text (user names, flavor names).

Pure. Kubernetes refuses an object whose name or label value breaks its grammar, so user text
is rewritten into that grammar here, once. A rewritten name carries a short hash of the
original, so two users whose names differ only in characters the grammar lacks ("a.b" and
"a_b") never share a namespace or a label value.
"""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63
_INVALID_DNS = re.compile(r"[^a-z0-9-]+")
_INVALID_LABEL = re.compile(r"[^A-Za-z0-9._-]+")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _fit(cleaned: str, original: str, trim: str) -> str:
    """``cleaned`` as is when it is the original and short enough, else shortened with a hash
    of the original appended (``trim`` are the characters that may not end a part)."""
    if cleaned == original and 0 < len(cleaned) <= MAX_LABEL:
        return cleaned
    head = cleaned[: MAX_LABEL - 9].strip(trim)
    return f"{head}-{_digest(original)}" if head else _digest(original)


def dns_label(text: str) -> str:
    """An RFC 1123 label (namespaces, pod names' parts): lower case letters, digits, '-'."""
    cleaned = _INVALID_DNS.sub("-", text.lower()).strip("-")
    return _fit(cleaned, text, "-")


def label_value(text: str) -> str:
    """A label value: letters, digits, '-', '_', '.', starting and ending alphanumeric."""
    if _LABEL_VALUE.match(text) and len(text) <= MAX_LABEL:
        return text
    cleaned = _INVALID_LABEL.sub("-", text).strip("-_.")
    return _fit(cleaned, text, "-_.")


def is_dns_label(text: str) -> bool:
    return len(text) <= MAX_LABEL and bool(_DNS_LABEL.match(text))
