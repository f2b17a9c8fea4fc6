"""Observations: users' file formats and the documented errors (phasemake.data.datafiles,
validated by phasemake.data.observations.validate), and block files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from phasemake.core.errors import ArtefactError, DataError
from phasemake.data.datafiles import read_data_file
from phasemake.data.observations import (
    Observations,
    block_ranges,
    iter_blocks,
    read_observations,
    write_observations,
)
from phasemake.workflow import data_rows

TIMES = np.array([[0.5, 0, 1.0], [1.25, 1, 2.0], [3.0, 0, 0.5]])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".npy", ".npz", ".h5"])
def test_formats_agree(tmp_path, suffix):
    path = tmp_path / f"times{suffix}"
    names = ["time", "censored", "weight"]
    if suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        rows = [sep.join(names)] + [sep.join(str(x) for x in row) for row in TIMES]
        path.write_text("\n".join(rows) + "\n")
    elif suffix == ".npy":
        np.save(path, TIMES)
    elif suffix == ".npz":
        np.savez(path, **{n: TIMES[:, j] for j, n in enumerate(names)})
    else:
        with h5py.File(path, "w") as f:
            for j, n in enumerate(names):
                f[n] = TIMES[:, j]
    obs = read_data_file(path, kind="absorption_times")
    for j, n in enumerate(names):
        np.testing.assert_array_equal(obs.columns[n], TIMES[:, j])


def test_defaults_for_optional_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time\n1\n2\n")
    obs = read_data_file(path, kind="absorption_times")
    assert obs.columns["censored"].tolist() == [0, 0]
    assert obs.columns["weight"].tolist() == [1, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("time\n", "no rows"),
        ("time,censored\n1,0\n2\n", "row 2 has 1 columns; the header has 2"),
        ("time\n1\nnan\n", r"row 2, column 'time': nan — expected a finite number"),
        ("time\n1\n-2\n", r"row 2, column 'time': -2.0 — expected a time >= 0"),
        ("time,censored\n1,2\n", r"row 1, column 'censored': 2.0 — expected 0 or 1"),
        ("time,weight\n1,0\n", r"row 1, column 'weight'"),
        ("time\n1\nabc\n", r"row 2, column 'time': 'abc' — expected a number"),
        ("time,height\n1,2\n", "expected columns among time, censored, weight"),
    ],
)
def test_bad_time_files_name_file_row_and_column(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        read_data_file(path, kind="absorption_times")
    assert str(path) in str(err.value)


def test_bad_sfs_files(tmp_path):
    path = tmp_path / "sfs.csv"
    path.write_text("sites,xi_1,xi_2\n100,3,1\n100,2.5,0\n")
    with pytest.raises(DataError, match=r"row 2, column 'xi_1': 2.5 — expected a non-negative"):
        read_data_file(path, kind="sfs", n_classes=2)
    path.write_text("sites,xi_1,xi_2\n100,3,1\n")
    with pytest.raises(DataError, match=r"no 'xi_3' column; the model has n - 1 = 3 SFS classes"):
        read_data_file(path, kind="sfs", n_classes=3)
    path.write_text("sites,xi_2\n100,3\n")
    with pytest.raises(DataError, match="sites,xi_1"):
        read_data_file(path, kind="sfs")
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(DataError, match=r"unknown data format '\.parquet'"):
        read_data_file(tmp_path / "x.parquet", kind="sfs")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_data_file(tmp_path / "nope.csv", kind="absorption_times")


def test_block_file_roundtrip_and_streaming(tmp_path):
    rng = np.random.default_rng(0)
    n = 1000
    obs = Observations(
        "absorption_times",
        {"time": rng.exponential(size=n), "censored": np.zeros(n), "weight": np.ones(n)},
    )
    meta = write_observations(obs, tmp_path / "o.h5", block_rows=128)
    assert len(meta["block_checksums"]) == 8 and meta["n_rows"] == n
    back = read_observations(tmp_path / "o.h5")
    np.testing.assert_array_equal(back.columns["time"], obs.columns["time"])
    parts = block_ranges(8, 3)
    assert [len(r) for r in parts] == [2, 3, 3]
    streamed = [b.columns["time"] for r in parts for b in iter_blocks(tmp_path / "o.h5", r)]
    np.testing.assert_array_equal(np.concatenate(streamed), obs.columns["time"])


def test_corrupt_block_is_detected(tmp_path):
    obs = Observations(
        "absorption_times",
        {"time": np.arange(10.0), "censored": np.zeros(10), "weight": np.ones(10)},
    )
    write_observations(obs, tmp_path / "o.h5", block_rows=4)
    with h5py.File(tmp_path / "o.h5", "r+") as f:
        f["time"][5] = 99.0
    assert len(list(iter_blocks(tmp_path / "o.h5", range(0, 1)))) == 1  # block 0 is intact
    with pytest.raises(ArtefactError, match=r"block 1 .* is corrupt"):
        list(iter_blocks(tmp_path / "o.h5"))


# -- input gaps (issue 13, finding 9): each refused at once, naming file, row and column ----
def _h5(path, **columns):
    with h5py.File(path, "w") as f:
        for name, data in columns.items():
            f.create_dataset(name, data=data)
    return path


def test_a_time_beyond_any_uniformisation_budget_names_its_row(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time\n1.0\n2.0\n1e308\n0.5\n")
    with pytest.raises(DataError, match=r"row 3, column 'time': 1e\+308 — expected a time at"):
        read_data_file(path, kind="absorption_times")
    path.write_text("time\n1.0\n2.0\n30.0\n0.0\n")  # a long tail is fine
    assert read_data_file(path, kind="absorption_times").n_rows == 4


def test_a_time_array_must_be_one_dimensional(tmp_path):
    path = _h5(tmp_path / "t.h5", time=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"column 'time' has shape \(3, 2\); expected a 1-d"):
        read_data_file(path, kind="absorption_times")
    np.savez(tmp_path / "t.npz", time=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"t\.npz: column 'time' has shape \(3, 2\)"):
        read_data_file(tmp_path / "t.npz", kind="absorption_times")


@pytest.mark.parametrize(
    ("dtype", "what"),
    [
        (h5py.vlen_dtype(np.float64), "a variable-length"),
        (np.dtype([("t", "f8"), ("c", "i4")]), r"a compound \(fields t, c\)"),
        (np.dtype("V8"), "an opaque"),
        (h5py.string_dtype(), "a string"),
    ],
)
def test_hdf5_columns_that_are_not_numbers_are_named(tmp_path, dtype, what):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("time", data=[1.0, 2.0])
        f.create_dataset("weight", shape=(2,), dtype=dtype)
    with pytest.raises(DataError, match=rf"t\.h5: column 'weight' has {what} dtype"):
        read_data_file(path, kind="absorption_times")
    with pytest.raises(DataError, match="column 'weight'"):  # at parse time too
        data_rows({"observations": "absorption_times", "data": {"file": str(path)}})


def test_npz_columns_that_are_not_numbers_are_named(tmp_path):
    np.savez(tmp_path / "t.npz", time=np.array(["1.0", "2.0"]))
    with pytest.raises(DataError, match=r"column 'time' has dtype <U3; expected numbers"):
        read_data_file(tmp_path / "t.npz", kind="absorption_times")


def test_hdf5_links_are_refused_not_followed(tmp_path):
    _h5(tmp_path / "elsewhere.h5", time=[1.0, 2.0, 3.0])
    external = tmp_path / "external.h5"
    with h5py.File(external, "w") as f:
        f["time"] = h5py.ExternalLink(str(tmp_path / "elsewhere.h5"), "/time")
    soft = tmp_path / "soft.h5"
    with h5py.File(soft, "w") as f:
        f.create_dataset("hidden/t", data=[1.0, 2.0])
        f["time"] = h5py.SoftLink("/hidden/t")
    virtual = tmp_path / "virtual.h5"
    layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(tmp_path / "elsewhere.h5"), "time", shape=(3,))
    with h5py.File(virtual, "w") as f:
        f.create_virtual_dataset("time", layout)
    raw = tmp_path / "raw.h5"
    (tmp_path / "raw.bin").write_bytes(np.arange(3.0).tobytes())
    with h5py.File(raw, "w") as f:
        f.create_dataset("time", shape=(3,), dtype="<f8", external=[("raw.bin", 0, 24)])
    for path, what in [
        (external, "is an external link to"),
        (soft, "is a soft link to /hidden/t"),
        (virtual, "is a virtual dataset"),
        (raw, "stores its data in external file"),
    ]:
        with pytest.raises(DataError, match=f"column 'time' {what}"):
            read_data_file(path, kind="absorption_times")
        with pytest.raises(DataError, match=f"{path.name}: column 'time' {what}"):
            data_rows({"observations": "absorption_times", "data": {"file": str(path)}})
    assert (
        data_rows(
            {"observations": "absorption_times", "data": {"file": str(tmp_path / "elsewhere.h5")}}
        )
        == 3
    )
