"""Run pypbx's CLI on uvloop's event loop (bench only; the product has no setting for it yet).

cli.main() calls asyncio.run(), which on Python 3.11 takes its loop from the event loop
policy; setting uvloop's policy first is the whole difference from `python -m pypbx`.
"""

import asyncio
import sys

import uvloop

from pypbx.cli import main

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.exit(main())
