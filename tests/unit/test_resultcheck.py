"""Parse-time check of result files (``phasemake.resultcheck``); through real snakemake in
tests/integration/test_cmc_stage.py (corrupt results are recomputed to the same bytes)."""

from __future__ import annotations

import numpy as np

from phasemake.core.artefact import write_artefact, write_json_artefact
from phasemake.fit import analysis
from phasemake.posterior import cmc, combination, consensus, sampling, shardplan
from phasemake.resultcheck import RESULT_FORMATS, discard_invalid_results


def test_the_formats_are_the_stages_own():
    assert RESULT_FORMATS == {
        "nlsq/fit.json": (analysis.FIT_KIND, (analysis.VERSION,)),
        "nlsq/profile.json": (analysis.PROFILE_KIND, (analysis.VERSION,)),
        "cmc/plan.json": (shardplan.SHARD_PLAN_KIND, (shardplan.SHARD_PLAN_VERSION,)),
        "cmc/S*/shard*.h5": (sampling.SHARD_KIND, (sampling.SHARD_VERSION,)),
        "cmc/consensus.h5": (consensus.CONSENSUS_KIND, (consensus.CONSENSUS_VERSION,)),
        "cmc/consensus.json": (combination.SUMMARY_KIND, (combination.VERSION,)),
        "cmc/compare_full.json": (cmc.COMPARE_KIND, (cmc.VERSION,)),
    }


def _results(root):
    (root / "nlsq").mkdir(parents=True)
    (root / "cmc/S2").mkdir(parents=True)
    write_json_artefact(root / "nlsq/fit.json", kind="phasemake.fit", version=1, payload={"a": 1})
    for k in range(2):
        write_artefact(
            root / f"cmc/S2/shard{k}.h5",
            kind="phasemake.shard_posterior",
            version=1,
            arrays={"phi": np.arange(12.0).reshape(2, 3, 2)},
            meta={"k": k},
        )


def test_corrupt_and_foreign_results_are_removed_and_valid_ones_kept(tmp_path):
    _results(tmp_path)
    assert discard_invalid_results(tmp_path) == []
    fit, shard = tmp_path / "nlsq/fit.json", tmp_path / "cmc/S2/shard1.h5"
    fit.write_text(fit.read_text().replace('"a": 1', '"a": 2'))  # checksum no longer matches
    (tmp_path / "cmc/plan.json").write_bytes(shard.read_bytes())  # a valid file, of another kind
    shard.write_bytes(shard.read_bytes()[:1000])  # truncated (a full disk, a killed copy)
    reported = discard_invalid_results(tmp_path, dry_run=True)
    assert len(reported) == 3 and all("dry run: not removed" in m for m in reported)
    assert fit.exists() and shard.exists() and (tmp_path / "cmc/plan.json").exists()
    removed = discard_invalid_results(tmp_path)
    assert len(removed) == 3 and all("removed it so it is recomputed" in m for m in removed)
    assert any(str(fit) in m and "checksum" in m for m in removed)
    assert not fit.exists() and not shard.exists() and not (tmp_path / "cmc/plan.json").exists()
    assert (tmp_path / "cmc/S2/shard0.h5").exists()
