"""Run Sippy's b2bua_simple with digest challenges and credentials relayed end to end.

Only for the call_setup reference run: b2bua_simple answers a callee's 401 with a bare 401
unless `UA.pass_auth` is set, and it has no option for that (its full `b2bua` script checks
credentials through RADIUS only). Everything else is Sippy's own main().
"""

import sys

from sippy.b2bua_simple import main_func
from sippy.UA import UA

UA.pass_auth = True

if __name__ == "__main__":
    sys.exit(main_func())
