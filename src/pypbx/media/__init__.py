"""pypbx.media: RTP anchoring for call legs.

Sans-I/O: `rtp` (packets), `rtcp` (report rewriting), `g711` (codec tables), `stream` (the PBX's
continuous output stream per phone), `latch` (symmetric RTP), `ports` (port range).
asyncio: `endpoint` (`RtpEndpoint`, `MediaManager`) and `bridge` (`Bridge`, `CodecSpec`).
"""
