"""Text normalisation. Pure functions."""

from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+", flags=re.UNICODE)


def normalise_text(text: str | None) -> str | None:
    """Unicode NFC, every whitespace run to one space, trimmed. None stays None."""
    if text is None:
        return None
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()
