"""The lumping recorded in a trace file (trace/lumpstore.py, trace/files.py).

- ``write_trace`` finds the trace's lumping from the arrays it writes and records it: a
  loaded trace's ``lumping`` is exactly ``lump`` of the same trace, and the observation
  model and ``EpochTrace`` use it without searching again;
- a trace that does not lump records so, and loading it never searches either;
- a version-1 file (no record) still loads, and its lumping is found once, on first use;
- a record that does not fit its trace is refused with the fix.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import phasemake
from phasemake import ArtefactError, build_graph
from phasemake.core.artefact import write_artefact
from phasemake.data.obsmodel import ObservationModel
from phasemake.models import block_counting, two_deme
from phasemake.trace import lumping
from phasemake.trace.files import (
    TRACE_FORMAT_VERSION,
    TRACE_KIND,
    UNIT_FORMAT_VERSION,
    load_trace,
    read_trace_artefact,
    trace_meta,
    write_trace,
)
from phasemake.trace.lumpstore import LUMP_KEYS, MAX_BLOCKS, has_lumping
from phasemake.trace.units import record_trace_arrays


def _stitched(model, **params):
    graph = build_graph(model, **params)
    arrays, units = record_trace_arrays(graph)
    return graph, arrays, trace_meta(graph, units)


def _no_search(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("lump was called: the stored lumping was not used")

    monkeypatch.setattr(lumping, "lump", refuse)


def test_the_versions_trace_two_units_and_plans_one():
    assert TRACE_FORMAT_VERSION == 2
    assert UNIT_FORMAT_VERSION == 1  # cached work units and plans stay valid


def test_a_written_trace_carries_its_lumping_and_nothing_searches_again(tmp_path, monkeypatch):
    graph, arrays, meta = _stitched(block_counting, n=8)
    want = lumping.lump(phasemake.compile_trace(graph)._series_data)
    assert want is not None and want.n_blocks == 7
    write_trace(arrays, meta, tmp_path / "t.h5")
    _no_search(monkeypatch)
    trace = load_trace(tmp_path / "t.h5")
    assert has_lumping(trace.arrays)
    got = trace.lumping
    assert got is trace.lumping  # read once
    np.testing.assert_array_equal(got.block, want.block)
    np.testing.assert_array_equal(got.nu, want.nu)
    np.testing.assert_array_equal(got.coef, want.coef)
    assert (got.n_blocks, got.start_mass) == (want.n_blocks, want.start_mass)
    assert got.block.dtype == want.block.dtype and got.coef.dtype == want.coef.dtype
    # the SFS observation model and a one-epoch EpochTrace take it from the trace
    model = ObservationModel("sfs", trace, states=graph.states)
    assert model._chain is not None
    history = phasemake.epochs(["c0"], rates=[{"coal": "c0"}], times=[], graph=graph)
    assert phasemake.EpochTrace(trace, history).lumping is got


def test_a_trace_that_does_not_lump_records_none(tmp_path, monkeypatch):
    graph, arrays, meta = _stitched(two_deme, n1=2, n2=1)
    assert lumping.lump(phasemake.compile_trace(graph)._series_data) is None
    write_trace(arrays, meta, tmp_path / "t.h5")
    _no_search(monkeypatch)
    trace = load_trace(tmp_path / "t.h5")
    assert trace.arrays["lump_blocks"].tolist() == [-1]
    assert not any(k in trace.arrays for k in LUMP_KEYS[1:])
    assert trace.lumping is None
    assert ObservationModel("sfs", trace, states=graph.states)._chain is None


def test_write_trace_finds_the_lumping_of_its_own_arrays(tmp_path):
    _, arrays, meta = _stitched(block_counting, n=6)
    _, other, _ = _stitched(block_counting, n=7)
    stale = arrays | _lump_arrays_of(other)  # another trace's lumping: replaced
    write_trace(stale, meta, tmp_path / "t.h5")
    stored = load_trace(tmp_path / "t.h5").lumping
    fresh = lumping.lump_trace(arrays)
    np.testing.assert_array_equal(stored.block, fresh.block)
    np.testing.assert_array_equal(stored.coef, fresh.coef)
    assert stored.n_blocks == 5


def _lump_arrays_of(arrays):
    from phasemake.trace.lumpstore import lumping_arrays

    return lumping_arrays(lumping.lump_trace(arrays))


def test_a_version_1_trace_still_loads_and_finds_its_lumping_once(tmp_path, monkeypatch):
    graph, arrays, meta = _stitched(block_counting, n=6)
    path = tmp_path / "old.h5"
    write_artefact(path, kind=TRACE_KIND, version=1, arrays=arrays, meta=meta)
    calls = []
    real = lumping.lump

    def counted(data, **kwargs):
        calls.append(1)
        return real(data, **kwargs)

    monkeypatch.setattr(lumping, "lump", counted)
    trace = load_trace(path)
    assert not has_lumping(trace.arrays) and calls == []
    want = real(phasemake.compile_trace(graph)._series_data)
    np.testing.assert_array_equal(trace.lumping.block, want.block)
    np.testing.assert_array_equal(trace.lumping.nu, want.nu)
    np.testing.assert_array_equal(trace.lumping.coef, want.coef)
    assert ObservationModel("sfs", trace, states=graph.states)._chain is not None
    assert calls == [1]


def _bad(arrays, what):
    lumped = _lump_arrays_of(arrays)
    if what == "short block":
        lumped["lump_block"] = lumped["lump_block"][:-1]
    elif what == "coef shape":
        lumped["lump_coef"] = lumped["lump_coef"][:-1]
    elif what == "too many blocks":
        lumped["lump_blocks"] = np.array([MAX_BLOCKS + 1])
    elif what == "block index":
        lumped["lump_block"] = lumped["lump_block"] + 10
    elif what == "missing nu":
        del lumped["lump_nu"]
    elif what == "none with blocks":
        lumped["lump_blocks"] = np.array([-1])
    elif what == "no count":
        del lumped["lump_blocks"]
    return arrays | lumped


@pytest.mark.parametrize(
    "what",
    [
        "short block",
        "coef shape",
        "too many blocks",
        "block index",
        "missing nu",
        "none with blocks",
        "no count",
    ],
)
def test_a_lumping_that_does_not_fit_its_trace_is_refused(tmp_path, what):
    _, arrays, meta = _stitched(block_counting, n=5)
    path = tmp_path / "bad.h5"  # checksummed: only a bad writer could make one
    write_artefact(
        path, kind=TRACE_KIND, version=TRACE_FORMAT_VERSION, arrays=_bad(arrays, what), meta=meta
    )
    fit = "lumping that does not fit its trace"
    pattern = f"{re.escape(str(path))}.*{fit}.*delete it so it is rebuilt"
    with pytest.raises(ArtefactError, match=pattern):
        read_trace_artefact(path)
    with pytest.raises(ArtefactError, match=pattern):
        load_trace(path)


def test_reading_a_trace_file_still_imports_no_jax(tmp_path):
    # the workflow verifies cache files at parse time, without JAX
    _, arrays, meta = _stitched(block_counting, n=5)
    write_trace(arrays, meta, tmp_path / "t.h5")
    code = (
        "import sys\n"
        "from phasemake.trace.files import read_trace_artefact\n"
        f"arrays, _ = read_trace_artefact({str(tmp_path / 't.h5')!r})\n"
        "assert arrays['lump_blocks'].tolist() == [4], arrays['lump_blocks']\n"
        "print('jax' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
