"""Issue 18's case end to end, on data simulated exactly: two demes of 4 + 4 lineages, 3,000
times, true mig = 0.5. NLSQ's profile is open above for mig and the fit warns; NUTS on
the full data (the issue's lognormal(0, 1) prior on mig) either fails its gates, or its
tails are checked against the grid posterior, and then either match it (95% interval and
P(mig > 2) within Monte Carlo error) or the check reports the disagreement. Nothing may
pass silently with a truncated tail.

Opt-in (``pytest --run-slow``): NUTS on this plateau is slow. The sampler's region is the
workflow's (:func:`phasemake.posterior.cmc.shard_budget`, cut at the prior's box: mig ≤
e^5); with the NLSQ covariance's region alone (mig ≈ 850 at ± 4 sd) two runs had not
finished 100 warm-up iterations after 30 and 6 minutes. Measured 2026-12-01 (2 cores,
shared with other tests): 544 s, and the gates refused the draws (bulk ESS 72 and 70 <
200), so the test took its "reports that it cannot" branch (docs/limits.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from phasemake import build_graph
from phasemake.models import two_deme
from phasemake.posterior.cmc import shard_budget
from phasemake.posterior.grid import grid_check, grid_posterior
from phasemake.posterior.priors import log_prior
from phasemake.posterior.refine import full_data_log_density
from phasemake.posterior.sampling import NUTSSettings, ShardQualityError, sample_nuts
from tests.unit.fit.test_profile import _times_fit

pytestmark = pytest.mark.slow


def test_two_demes_four_plus_four_sampler_matches_the_grid_or_says_it_cannot():
    obs, fit, model = _times_fit(build_graph(two_deme, n1=4, n2=4), [1.0, 0.5], 3000, seed=1)
    t_max = float(obs.columns["time"].max())
    assert fit["parameters"]["mig"]["profile"][1] is None
    assert any("open above" in w for w in fit["warnings"])

    names = list(model.par.free_names)
    config = {"mig": {"lognormal": {"loc": 0.0, "scale": 1.0}}}
    prior = log_prior(names, config)
    phi0 = np.log([fit["parameters"][n]["estimate"] for n in names])
    cov = np.asarray(fit["log_covariance"])
    budget = shard_budget(model, phi0, cov, shards=1, t_max=t_max, prior=config)
    try:
        post = sample_nuts(
            model,
            obs,
            log_prior=prior,
            shards=1,
            init_phi=phi0,
            init_cov=cov,
            budget=budget,
            settings=NUTSSettings(),
            seed=(18, 0, 1),
        )
    except ShardQualityError as err:  # reports that it cannot: with the reason
        print(f"outcome: gates failed: {err}")
        assert any(k in str(err) for k in ("ESS", "R-hat", "divergence")), err
        return
    density = full_data_log_density(model, obs, log_prior=prior, t_max=t_max)
    draws = post.phi.reshape(-1, 2)
    record, problems = grid_check(density, draws, names, ess_tail=post.meta["ess_tail"])
    print(f"outcome: gates passed; grid {record}; problems {problems}")
    if problems:  # reports that it cannot: the tail it misses, named
        assert any("disagree with the grid posterior" in p or "still has" in p for p in problems)
        return
    # it matches: the grid's P(mig > 2) within the draws' Monte Carlo error
    lows, highs = np.log(record["lows"]), np.log(record["highs"])
    grid = grid_posterior(density, lows, highs)
    p_grid = 1.0 - grid.cdf(1, np.log(2.0))
    p_draws = float(np.mean(draws[:, 1] > np.log(2.0)))
    se = np.sqrt(max(p_grid * (1 - p_grid), 1e-4) / post.meta["ess_tail"][1])
    print(f"P(mig > 2): grid {p_grid:.4f}, draws {p_draws:.4f} ± {se:.4f}")
    assert abs(p_grid - p_draws) < 3 * se + 0.005, (p_grid, p_draws, se)
