"""Live availability for storefronts: Server-Sent Events fed through Redis Streams (docs/stream.md).

- ``publish``: after a commit that can move a listing's number (the same moment the availability cache is
  bumped), the listings of channels with open streams are read once (number and freshness state) and
  appended to their channel's Redis Stream when they differ from what was last appended.
- ``hub``: one reader per web process and channel (``XREAD BLOCK``) fans events out to that process's
  open streams; a stream never polls PostgreSQL.
- ``views``: the async endpoint ``GET /api/v1/availability/stream/``.
"""
