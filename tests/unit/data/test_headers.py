"""Text-file headers: the missing or unknown column named, header-less files recognised,
SFS columns in any order."""

from __future__ import annotations

import numpy as np
import pytest

from phasemake.core.errors import DataError
from phasemake.data.datafiles import read_data_file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("duration\n1\n", "no 'time' column; unknown column 'duration'"),
        ("time,weigth\n1,2\n", "unknown column 'weigth' \\(did you mean 'weight'\\?\\)"),
        ("1.5\n2.5\n", r"the first line is data \(1.5\), not a header; add a header line"),
        ("time,time\n1,2\n", r"duplicate column\(s\) \['time'\]"),
    ],
)
def test_time_headers_say_what_is_missing(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        read_data_file(path, kind="absorption_times")
    assert str(path) in str(err.value)


def test_sfs_columns_in_any_order(tmp_path):
    ordered, shuffled = tmp_path / "a.csv", tmp_path / "b.csv"
    ordered.write_text("sites,xi_1,xi_2,xi_3\n100,5,2,1\n200,7,3,0\n")
    shuffled.write_text("xi_3,sites,xi_2,xi_1\n1,100,2,5\n0,200,3,7\n")
    a = read_data_file(ordered, kind="sfs", n_classes=3)
    b = read_data_file(shuffled, kind="sfs", n_classes=3)
    for name in a.columns:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])
    shuffled.write_text("xi_3,sites,xi_1\n1,100,5\n")
    with pytest.raises(DataError, match="no 'xi_2' column"):
        read_data_file(shuffled, kind="sfs")
