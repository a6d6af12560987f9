"""senm_plugin.heap: freed memory stays in the heap inside ``retained_heap`` and goes back to the system after it."""
import json
import os
import subprocess
import sys

import pytest

from senm_plugin import heap

# Rounds of 40 x 4 MiB tensors, all alive together then all freed: the allocation pattern of a network's feature maps.
# Prints the page faults of the rounds after a warm-up, and the resident set inside and after the block.
WORKLOAD = r'''
import json, resource, sys, torch
from senm_plugin.heap import retained_heap

def rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096 / 2**20

def rounds(n):
    for _ in range(n):
        tensors = [torch.ones(1 << 20) for _ in range(40)]
        del tensors

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

if sys.argv[1] == 'retained':
    with retained_heap():
        rounds(1)
        start = faults()
        rounds(5)
        result = {'faults': faults() - start, 'rss_inside': rss_mb()}
    result['rss_after'] = rss_mb()
else:
    rounds(1)
    start = faults()
    rounds(5)
    result = {'faults': faults() - start}
print(json.dumps(result))
'''

PAGES_PER_ROUND = 40 * (4 << 20) // 4096

glibc_only = pytest.mark.skipif(not heap.heap_retention_supported(), reason='heap retention tunes glibc malloc only')


def _run(mode):
    env = {k: v for k, v in os.environ.items() if not k.startswith('MALLOC_')}  # glibc's defaults in the child
    env['OMP_NUM_THREADS'] = '1'
    out = subprocess.run([sys.executable, '-c', WORKLOAD, mode], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_retained_heap_reuses_freed_pages_and_returns_them_after():
    default, retained = _run('default'), _run('retained')
    # glibc's defaults hand the 160 MiB back (usually after every round; less often when a small allocation happens
    # to pin the top of the heap, seen once in a full test run), so later rounds fault pages in again
    assert default['faults'] > PAGES_PER_ROUND
    # inside the block the freed tensors are reused: no round after the first touches new pages
    assert retained['faults'] < PAGES_PER_ROUND // 10
    # the freed 160 MiB were still held inside the block and are returned on leaving it
    assert retained['rss_inside'] - retained['rss_after'] > 100


def test_retained_heap_is_a_no_op_without_glibc(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, '_LIBC', None)
    monkeypatch.setattr(heap, '_retain', lambda libc: calls.append(libc))
    with heap.retained_heap():
        with heap.retained_heap():
            pass
    assert heap.retain_heap() is False
    assert calls == []


def test_retained_heap_nests_and_restores_once(monkeypatch):
    class FakeLibc:

        def __init__(self):
            self.calls = []

        def mallopt(self, param, value):
            self.calls.append(('mallopt', param, value))
            return 1

        def malloc_trim(self, pad):
            self.calls.append(('trim', pad))
            return 1

    libc = FakeLibc()
    monkeypatch.setattr(heap, '_LIBC', libc)
    monkeypatch.setattr(heap, '_depth', 0)
    monkeypatch.setattr(heap, '_permanent', False)
    with heap.retained_heap():
        with heap.retained_heap():
            pass
        assert ('trim', 0) not in libc.calls  # the inner block leaves the outer one's setting alone
    assert libc.calls == [('mallopt', heap.M_MMAP_THRESHOLD, heap.MMAP_THRESHOLD_MAX),
                          ('mallopt', heap.M_TRIM_THRESHOLD, heap.TRIM_THRESHOLD_NEVER),
                          ('mallopt', heap.M_TRIM_THRESHOLD, heap.TRIM_THRESHOLD_AFTER), ('trim', 0)]
    # once retained for the whole process, leaving a block no longer trims
    libc.calls.clear()
    assert heap.retain_heap() is True
    with heap.retained_heap():
        pass
    assert ('trim', 0) not in libc.calls
