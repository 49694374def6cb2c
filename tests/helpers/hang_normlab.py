"""`normlab` as the lost-worker tests run it: plain normlab, except that once the file $HANG_AFTER
exists, the next forward pass writes this process's pid to $HANG_MARKER and waits there to be
killed: a worker lost mid-run at a point fixed by the run's own progress, not by the clock.
Without $HANG_MARKER, once the marker exists (a rerun), or in another SLURM array task than
$HANG_TASK (when set), it is plain normlab."""

import os
import runpy
import sys
import time

marker = os.environ.get("HANG_MARKER")
task = os.environ.get("SLURM_ARRAY_TASK_ID")
if marker and not os.path.exists(marker) and os.environ.get("HANG_TASK", task) == task:
    import torch

    after = os.environ["HANG_AFTER"]

    def hang(module, args, output):
        if os.path.exists(after):
            with open(marker + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(marker + ".tmp", marker)
            while True:
                time.sleep(60)

    torch.nn.modules.module.register_module_forward_hook(hang)

sys.argv[0] = "normlab"
runpy.run_module("normlab", run_name="__main__", alter_sys=True)
