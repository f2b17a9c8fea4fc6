"""Job logs: everything to the file; progress, at a limited rate, and warnings to stderr."""

from __future__ import annotations

import logging

from phasemake.core.joblog import PROGRESS, job_log


def test_progress_reaches_stderr_at_a_limited_rate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PHASEMAKE_PROGRESS_SECONDS", "3600")
    path = tmp_path / "logs" / "sample_shard" / "times" / "S4" / "shard0.log"
    path.parent.mkdir(parents=True)
    with job_log(path, "sample_shard") as log:
        log.info("plain detail")
        for i in range(5):
            logging.getLogger("phasemake.posterior.sampling").info(
                "iteration %d", i, extra=PROGRESS
            )
        log.warning("careful")
    err = capsys.readouterr().err.splitlines()
    # the first progress line only (the next ones fall within the hour), and the warning
    assert err == [
        "[sample_shard/times/S4/shard0] iteration 0",
        "[sample_shard/times/S4/shard0] careful",
    ]
    text = path.read_text()
    assert "plain detail" in text and "iteration 4" in text and "careful" in text


def test_progress_can_be_switched_off(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PHASEMAKE_PROGRESS_SECONDS", "0")
    with job_log(tmp_path / "job.log", "demo") as log:
        log.info("pass 0", extra=PROGRESS)
    assert capsys.readouterr().err == ""
