"""Test job: leaves a detached grandchild behind (its own session, an empty environment, so
no tag finds it), prints its uid and exits 0."""

import os
import subprocess

subprocess.Popen(["/bin/sleep", "600"], start_new_session=True, env={})
print("uid", os.getuid(), flush=True)
