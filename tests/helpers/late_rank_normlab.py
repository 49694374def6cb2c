"""`normlab` as the resume-race test runs it: plain normlab, except that every rank but 0 loads
the checkpoint only once rank 0 has rewritten the run's config.json with the new --epochs
($LATE_EPOCHS): the order of a slow rank, forced by the run's own files, not by the clock."""

import json
import os
import runpy
import sys
import time

if os.environ.get("RANK", "0") != "0":
    from normlab.train import checkpoint

    load, epochs = checkpoint.load_last_complete_epoch, int(os.environ["LATE_EPOCHS"])

    def late_load(run, *args, **kwargs):
        deadline = time.monotonic() + 120  # bounds a broken run only
        while time.monotonic() < deadline:
            try:
                if json.loads((run / "config.json").read_text()).get("epochs") == epochs:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        return load(run, *args, **kwargs)

    checkpoint.load_last_complete_epoch = late_load

sys.argv[0] = "normlab"
runpy.run_module("normlab", run_name="__main__", alter_sys=True)
