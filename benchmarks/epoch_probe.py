"""Does anything in a training process slow its epochs down as the run goes on? Trains as `main.py train`
does, with a probe around each epoch.

    python benchmarks/epoch_probe.py [main.py train flags...]

Before each epoch the probe times a fixed forward and backward pass (a separate SRCNN of fixed weights,
batch 64, 20 steps), in the same process; after it, it prints a `probe` line: the epoch's wall and CPU
time, the fixed pass's, the page faults and involuntary context switches of the epoch, the peak resident
memory, and glibc's heap (`mallinfo2`: bytes in the heap, in use, and its count of free chunks). If the
epochs slow down while the fixed pass does not, it is the run's own state (weights, data order); if both
do, it is the process (memory, threads) or the machine; a growing heap or fault count says which.
"""
import ctypes
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import main  # noqa: E402
import training  # noqa: E402
from model import SRCNN  # noqa: E402


class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def heap():
    """(MB in glibc's heap, MB in use, free chunks), or None without glibc 2.33+."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Mallinfo2
    except (OSError, AttributeError):
        return None
    m = libc.mallinfo2()
    return m.arena >> 20, m.uordblks >> 20, m.ordblks


def probed(train_epoch):
    generator = torch.Generator().manual_seed(1)  # its own: the run's random numbers stay the run's
    model = SRCNN().to(memory_format=torch.channels_last)
    x = torch.rand(64, 3, 33, 33, generator=generator).contiguous(memory_format=torch.channels_last)

    def fixed_pass():
        start = time.perf_counter()
        for _ in range(20):
            model.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
        return time.perf_counter() - start

    def epoch(run, n):
        fixed = fixed_pass()
        before, wall, cpu = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
        loss = train_epoch(run, n)
        after = resource.getrusage(resource.RUSAGE_SELF)
        h = heap()
        print(f"probe epoch {n}: {time.perf_counter() - wall:.2f} s wall, {time.process_time() - cpu:.2f} s CPU; "
              f"fixed pass {fixed:.3f} s; {after.ru_minflt - before.ru_minflt} page faults, "
              f"{after.ru_nivcsw - before.ru_nivcsw} involuntary switches; peak RSS {after.ru_maxrss >> 10} MB"
              + (f"; heap {h[0]} MB, {h[1]} MB in use, {h[2]} free chunks" if h else ""), flush=True)
        return loss
    return epoch


if __name__ == "__main__":
    training.train_epoch = probed(training.train_epoch)
    main.main(["train", *sys.argv[1:]])
