"""The patterns of the wire models' text fields, and what each means in words: an error names
the rule, not the regular expression."""

from __future__ import annotations

LABEL = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,62})?$"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_NAME = r"^[A-Z_a-z][A-Z_a-z0-9]*$"
"""The same names as ``IDENTIFIER``, written apart so that an error can say which it wants."""
NO_NUL = r"^[^\x00]*$"
BASE64 = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

WORDS = {
    LABEL: "letters, digits, '.', '_' or '-' (a letter or digit first)",
    IDENTIFIER: "a Python variable name",
    NO_NUL: "text without a NUL character",
    ENV_NAME: "an environment variable name",
    BASE64: "base64",
}
"""What each pattern asks for, in words."""
