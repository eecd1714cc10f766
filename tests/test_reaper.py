"""The reaper (aioinfer/_reaper.py): requests buried from destructors are released on its thread,
and burying never starts a thread (it runs in destructors, in the garbage collector, where starting
one can wait on what the collecting thread holds: a process froze so once, under trio)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# In a fresh interpreter (no reaper thread yet): burying starts no thread; the reaper, started
# where requests are made, then releases the request.
SCRIPT = textwrap.dedent(
    """
    import threading
    import numpy as np, openvino as ov, openvino.opset13 as ops
    from aioinfer import _reaper

    x = ops.parameter([1, 4], np.float32)
    compiled = ov.Core().compile_model(ov.Model([ops.relu(x)], [x]), "CPU")

    class Owner:
        pass

    owner = Owner()
    owner.request = compiled.create_infer_request()
    owner.request.start_async({0: np.ones((1, 4), np.float32)})
    threads = threading.active_count()
    _reaper.bury(owner, "request")
    assert owner.request is None
    assert threading.active_count() == threads, "bury started a thread"
    _reaper.start()
    _reaper.join()
    print("released")
    """
)


def test_burying_never_starts_a_thread_so_it_cannot_freeze_in_a_destructor() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "released"
