"""asyncio adapters: the only place where SIP bytes meet sockets."""
