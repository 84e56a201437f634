"""
dicomd's tests.

Every daemon, front door and journal the tests start keeps its state in a
temporary directory of this test run, never in the real state directory
(C{/var/lib/dicomd} or C{~/.local/state/dicomd}): C{$STATE_DIRECTORY},
which L{dicomd.storage.state.defaultStateDirectory} honours first, is set
for this process and the children it starts.
"""

import atexit
import os
import shutil
import tempfile

os.environ["STATE_DIRECTORY"] = tempfile.mkdtemp(prefix="dicomd-tests-state-")
atexit.register(shutil.rmtree, os.environ["STATE_DIRECTORY"], True)
