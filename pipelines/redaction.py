"""Secrets out of logs and stored copies: the password or token part of a URI or connection string
becomes '***' before the configuration is logged, written to an MLflow artifact or a file.

(Not named `secrets.py`: run from inside pipelines/, that name would hide the standard library's.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# scheme://user:password@host or scheme://:password@host (redis://, postgresql://, https://...)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):(?P<secret>[^@/?#\s]*)@")
# scheme://token@host (a bare user part that is a token, e.g. https://ghp_xxx@github.com)
_TOKEN_USER = re.compile(r"(?P<head>(?:https?|rediss?|git)://)(?P<secret>[^:/?#@\s]+)@")
# password=..., token=..., ?access_token=..., secret=..., api_key=... in a query string or in
# Feast's Redis form "host:6379,db=0,password=..."
_KEY_VALUE = re.compile(
    r"(?P<head>(?:^|[?&,;\s])[A-Za-z0-9_-]*(?:password|passwd|pwd|token|secret|api_?key|"
    r"access_?key)[A-Za-z0-9_-]*=)(?P<secret>[^&,;\s]*)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with every password, token or secret in it replaced by '***'."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["secret"] else m[0], text)
    text = _TOKEN_USER.sub(lambda m: f"{m['head']}{MASK}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}" if m["secret"] else m[0], text)


def redact_config(raw: Any) -> Any:
    """A copy of a configuration (mappings, lists, scalars) with every string redacted."""
    if isinstance(raw, Mapping):
        return {key: redact_config(value) for key, value in raw.items()}
    if isinstance(raw, list | tuple):
        return [redact_config(value) for value in raw]
    if isinstance(raw, str):
        return redact(raw)
    return raw
