"""Access control: bearer JWT verification, key sources and the caller's permissions (GEN-06).

No web framework here: ``app.api`` turns :class:`~app.auth.verify.InvalidToken` into a 401 and a
missing permission into a 403; the DIMSE front end (later) builds a :class:`Principal` from the
calling AE title instead of a token.
"""
