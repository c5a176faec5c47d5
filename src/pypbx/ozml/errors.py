"""The one exception the OzML parser raises.

A reply the PBX cannot read is a *failed notification* (spec 2.2): the caller of `parse_ozml`
falls back to the context's default behaviour whatever went wrong, so every way a document can
be unreadable - syntax, size, forbidden DTD, undecodable bytes - surfaces as this single type,
with a message fit for the notification log.
"""

from __future__ import annotations


class OzmlError(ValueError):
    """The document is not OzML, even after every leniency rule of spec 5.2 was applied."""
