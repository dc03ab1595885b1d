"""Session 24: how fast the host writes and reads the page-locked buffers a step stages
through, by kind of memory (the staging of a 10k-atom step, 240 KB, took ~49 us on the
H100 VMs and 16 us on the development machine). Each pass copies the caller's positions
(n x 3 doubles, ordinary memory) into the buffer, or the buffer into the caller's forces.
Kinds: ordinary memory; cuMemHostAlloc (page-locked) plain and write-combined (what
the engine uses for the positions); anonymous memory with transparent huge pages
(madvise), then cuMemHostRegister.
Usage (GPU machine): python3 host_copy.py [ATOMS ...]"""
import ctypes, mmap, sys, time
import numpy as np
import torch

torch.cuda.init()
torch.zeros(1, device="cuda")  # the primary context, current on this thread
cuda = ctypes.CDLL("libcuda.so.1")
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def check(rc, what):
    if rc != 0:
        raise RuntimeError(f"{what}: CUresult {rc}")


def host_alloc(nbytes, flags):
    p = ctypes.c_void_p()
    check(cuda.cuMemHostAlloc(ctypes.byref(p), ctypes.c_size_t(nbytes), ctypes.c_uint(flags)), "cuMemHostAlloc")
    return p.value


def huge_registered(nbytes):
    size = (nbytes + (2 << 20) - 1) // (2 << 20) * (2 << 20)
    # 2 MB-aligned anonymous mapping with a huge-page hint.
    raw = libc.mmap(None, size + (2 << 20), mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    p = (raw + (2 << 20) - 1) // (2 << 20) * (2 << 20)
    rc = libc.madvise(ctypes.c_void_p(p), ctypes.c_size_t(size), 14)  # MADV_HUGEPAGE
    ctypes.memset(p, 0, size)  # touch: the pages are faulted in (huge where granted)
    check(cuda.cuMemHostRegister_v2(ctypes.c_void_p(p), ctypes.c_size_t(size), ctypes.c_uint(0)), "cuMemHostRegister")
    return p, rc


def view(ptr, count):
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_double)), shape=(count,))


def per_pass(f, reps):
    f()
    best = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        best.append((time.perf_counter() - t) / reps)
    return 1e6 * float(np.median(best))


print("THP:", open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip())
for n in [int(a) for a in sys.argv[1:]] or [10002, 100002]:
    count = 3 * n
    src = np.random.default_rng(0).random(count)
    dst = np.zeros(count)
    kinds = {
        "ordinary": dst,
        "page-locked": view(host_alloc(8 * count, 0), count),
        "page-locked WC": view(host_alloc(8 * count, 4), count),
    }
    p, rc = huge_registered(8 * count)
    kinds[f"THP + register (madvise rc {rc})"] = view(p, count)
    reps = max(20, 2_000_000 // count)
    for name, buf in kinds.items():
        buf[:] = 0
        w = per_pass(lambda: np.copyto(buf, src), reps)
        r = per_pass(lambda: np.copyto(dst, buf), reps) if buf is not dst else float("nan")
        print(f"{n} atoms, {8 * count / 1e3:.0f} KB, {name}: write {w:.1f} us ({8 * count / w / 1e3:.1f} GB/s), read into ordinary {r:.1f} us")
    # What the device copy sees: upload from each page-locked kind.
    d = torch.empty(count, dtype=torch.float64, device="cuda")
    for name, buf in kinds.items():
        if buf is dst:
            continue
        t = torch.from_numpy(buf)
        def up():
            d.copy_(t, non_blocking=True)
            torch.cuda.synchronize()
        print(f"{n} atoms, {name}: upload + synchronize {per_pass(up, reps):.1f} us")
    grep = [l for l in open("/proc/meminfo") if "AnonHugePages" in l]
    print(grep[0].strip() if grep else "")
