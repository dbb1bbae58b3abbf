"""nstlib.cpu_memory: freed memory is kept and reused instead of being mapped anew.

Oracles: the kernel's own counts. ``ru_minflt`` (minor page faults) says whether a new tensor's pages
were mapped afresh: 64 MiB made five times costs about 5 x 16,384 faults with glibc's defaults and
almost none once freed memory is reused (after a few rounds: a block freed by ``posix_memalign`` is a
few bytes too small for the next aligned request until it has merged with its neighbours). The
resident size (``/proc/self/statm``) says whether freed memory stayed with the process and whether
``release_freed_memory`` gave it back. Each check runs in a fresh Python process, since the
thresholds are process-wide and cannot be unset.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from nstlib import cpu_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
needs_glibc = pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; elsewhere both do nothing (tested below)")

FAULTS = textwrap.dedent("""
    import json, resource, sys, torch
    from nstlib import cpu_memory
    applied = cpu_memory.reuse_freed_memory(force="force" in sys.argv) if "reuse" in sys.argv else False
    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):  # the first ones are always mapped in; posix_memalign's aligned blocks need a few
        torch.empty(64 << 20, dtype=torch.uint8).fill_(1)  # rounds before a freed one is large enough
    before = faults()
    for _ in range(5):
        torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
    print(json.dumps({"applied": applied, "faults": faults() - before}))
""")


def run(script: str, *args: str, env: dict | None = None) -> dict:
    environment = {**os.environ, **(env or {})}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=environment,
                          timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_glibc
def test_reused_memory_is_not_page_faulted_in_again():
    default = run(FAULTS)
    reused = run(FAULTS, "reuse")
    assert default["applied"] is False and reused["applied"] is True
    pages = 5 * (64 << 20) // 4096
    assert reused["faults"] < pages // 100  # essentially none: the freed block is handed out again
    assert default["faults"] > 10 * max(reused["faults"], 1)


@needs_glibc
def test_the_environment_variable_leaves_malloc_alone_unless_forced():
    declined = run(FAULTS, "reuse", env={cpu_memory.ENVIRONMENT_VARIABLE: "0"})
    assert declined["applied"] is False
    assert declined["faults"] > 5 * (64 << 20) // 4096 // 2  # mapped anew each time, as by default
    forced = run(FAULTS, "reuse", "force", env={cpu_memory.ENVIRONMENT_VARIABLE: "off"})
    assert forced["applied"] is True and forced["faults"] < 5 * (64 << 20) // 4096 // 100


@needs_glibc
def test_freed_memory_stays_until_released():
    script = textwrap.dedent("""
        import json, os, torch
        from nstlib import cpu_memory
        rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
        cpu_memory.reuse_freed_memory()
        base = rss()
        block = torch.empty(256 << 20, dtype=torch.uint8).fill_(1)
        del block
        kept = rss()
        released = cpu_memory.release_freed_memory()
        print(json.dumps({"base": base, "kept": kept, "after": rss(), "released": released}))
    """)
    got = run(script)
    assert got["kept"] - got["base"] >= 240  # MiB: freed, yet still the process's
    assert got["released"] is True
    assert got["kept"] - got["after"] >= 240  # handed back by malloc_trim


def test_the_fast_cpu_backends_reuse_memory_and_torch_does_not():
    script = textwrap.dedent("""
        import json, sys, torch
        from nstlib import TransformerNet, cpu_memory, stylize_image
        net = TransformerNet(base=4)
        stylize_image(net, torch.rand(1, 3, 64, 64), backend=sys.argv[1])
        print(json.dumps({"applied": cpu_memory._applied}))
    """)
    assert run(script, "torch")["applied"] is False
    assert run(script, "float32")["applied"] is GLIBC
    assert run(script, "float32", env={cpu_memory.ENVIRONMENT_VARIABLE: "no"})["applied"] is False


def test_without_glibc_both_do_nothing(monkeypatch):
    monkeypatch.setattr(cpu_memory.platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(cpu_memory, "_applied", False)
    assert cpu_memory.reuse_freed_memory(force=True) is False
    assert cpu_memory.release_freed_memory() is False
    assert cpu_memory._applied is False


def test_describe_says_what_was_done_or_would_be(monkeypatch):
    monkeypatch.setattr(cpu_memory, "_glibc", lambda: object())  # glibc present; nothing is called on it
    monkeypatch.setattr(cpu_memory, "_applied", False)
    monkeypatch.delenv(cpu_memory.ENVIRONMENT_VARIABLE, raising=False)
    assert cpu_memory.describe().startswith("kept for reuse once a fast CPU path runs")
    monkeypatch.setenv(cpu_memory.ENVIRONMENT_VARIABLE, "0")
    assert cpu_memory.describe() == "glibc's defaults (NSTLIB_REUSE_MEMORY=0)"
    monkeypatch.setattr(cpu_memory, "_applied", True)
    assert cpu_memory.describe() == "kept for reuse (mallopt thresholds 1024 MiB)"
    monkeypatch.setattr(cpu_memory, "_glibc", lambda: None)
    assert cpu_memory.describe().startswith("left to the C library")
