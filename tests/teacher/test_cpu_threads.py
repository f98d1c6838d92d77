"""teacher.backbone.set_cpu_threads("auto"): the cores other processes keep busy now, not the 1-min load average."""

from __future__ import annotations

import os

import psutil
import pytest
import torch

from reldistill.settings import Runtime
from reldistill.teacher.backbone import busy_cores, set_cpu_threads


class _Me:
    def __init__(self, pct: float):
        self.pct = pct

    def cpu_percent(self, interval=None):
        return self.pct


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def _machine(monkeypatch, per_core, mine=0.0, load1=0.0):
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None, percpu=False: list(per_core))
    monkeypatch.setattr(psutil, "Process", lambda *a: _Me(mine))
    monkeypatch.setattr(os, "getloadavg", lambda: (load1, load1, load1))


def test_a_job_that_just_ended_leaves_every_core(two_cores):
    # the 1-min load average is still ~1.7 after a 2-core job ends: it used to give the next run 1 thread of 2
    _machine(two_cores, [3.0, 1.0], load1=1.7)
    assert set_cpu_threads("auto", Runtime()) == 2 and torch.get_num_threads() == 2


def test_a_core_another_process_keeps_busy_is_left_to_it(two_cores):
    _machine(two_cores, [100.0, 4.0])
    assert busy_cores([0, 1]) == pytest.approx(1.04)
    assert set_cpu_threads("auto", Runtime()) == 1


def test_this_process_own_work_is_not_counted_as_busy(two_cores):
    _machine(two_cores, [95.0, 90.0], mine=180.0)  # our own threads (e.g. a previous stage's) on both cores
    assert set_cpu_threads("auto", Runtime()) == 2


def test_without_per_core_figures_the_load_average_decides(two_cores):
    def fail(*a, **k):
        raise psutil.AccessDenied()

    _machine(two_cores, [], load1=1.6)
    two_cores.setattr(psutil, "cpu_percent", fail)
    assert busy_cores([0, 1]) == 1.6
    assert set_cpu_threads("auto", Runtime()) == 1


def test_a_pinned_or_explicit_count_is_kept(two_cores):
    _machine(two_cores, [100.0, 100.0])
    torch.set_num_threads(2)
    assert set_cpu_threads("auto", Runtime(threads_pinned=True)) == 2
    assert set_cpu_threads(2, Runtime()) == 2
