"""``phasemake.from_demes`` against msprime (independent) and analytic references.

References, tolerances and what was measured (2 cores, shared):

- **E[T_MRCA] of two lineages** (bottleneck, split with asymmetric migration, pulse, a
  two-parent admixture) against msprime's ``DemographyDebugger``: its
  ``coalescence_rate_trajectory`` gives P(T > t) at 256 steps per epoch (matrix
  exponentials), integrated here by Simpson's rule plus the exponential tail past the last
  event: relative 1e-10 (measured ≤ 6e-13). ``min_pop_size`` is the model's smallest size:
  otherwise the debugger gives demes that do not exist yet a size of 1 and its 5-term
  Taylor exponential, squared many times, is off by ~6e-4. For the bottleneck also
  ``mean_coalescence_time(rtol=1e-6)`` itself: relative 1e-6 (measured 2.4e-7; on two
  demes it takes 4-20 s for ~2e-7, its piecewise-exponential interpolation of P).
- **Exponential growth**: the debugger takes each step's size at its young end, a first
  order error (7e-4 at rtol=1e-3, in 10 s), so the reference is analytic: one deme is a
  time change of Kingman's coalescent, ``E[T] = ∫ P(T_K > Λ(t)) dt`` with the
  hypoexponential survival of T_K and ``Λ`` in closed form (quadrature to 1e-13). The
  module's bound (relative error ≤ ``tolerance``) is checked end to end at 1e-6 (measured
  7.5e-7 for a pair, 5e-12 for 5 lineages) and, on the history's own piecewise-constant
  rates for a 100-fold growth, at 1e-2, 1e-4 and 1e-6: a pair's error is 0.17-0.76 of the
  tolerance (the bound is tight there), 4 lineages' ~1/100 of it.
- **n > 2 lineages and the expected SFS** against 10,000 msprime simulations (fixed
  seeds): within 4 Monte Carlo standard errors (a false alarm ~6e-5 per check; measured
  |z| ≤ 1.7 for the TMRCAs, ≤ 1.2 for the five SFS classes).
- **Gradients** (an exponential epoch's end size, a split time, a pulse proportion and
  time, a migration rate) against central differences with relative step 1e-5: relative
  1e-5 (measured ≤ 2e-8).
- **Free parameters moved away from the file** equal the file edited to those values (the
  split's times, a pulse, a migration): relative 1e-10 (measured 0).
"""

from __future__ import annotations

import itertools
import math

import demes
import jax
import jax.numpy as jnp
import msprime
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import phasemake
from phasemake import PhasemakeError
from phasemake.graph.demes import from_demes

jax.config.update("jax_enable_x64", True)

BOTTLENECK = """
time_units: generations
demes:
  - name: A
    epochs:
      - {start_size: 10000, end_time: 2000}
      - {start_size: 500, end_time: 1500}
      - {start_size: 5000, end_time: 0}
"""

GROWTH = """
time_units: generations
demes:
  - name: A
    epochs:
      - {start_size: 10000, end_time: 500}
      - {start_size: 10000, end_size: 40000, end_time: 0}
"""

SPLIT = """
time_units: generations
demes:
  - name: anc
    epochs: [{start_size: 5000, end_time: 2000}]
  - name: A
    ancestors: [anc]
    epochs: [{start_size: 500}]
  - name: B
    ancestors: [anc]
    epochs: [{start_size: 8000, end_time: 300}, {start_size: 20000}]
migrations:
  - {source: A, dest: B, rate: 1.0e-3, start_time: 1500, end_time: 0}
  - {source: B, dest: A, rate: 5.0e-5, start_time: 1500, end_time: 100}
"""

ADMIXTURE = """
time_units: generations
demes:
  - name: X
    epochs: [{start_size: 4000}]
  - name: A
    ancestors: [X]
    start_time: 3000
    epochs: [{start_size: 1000}]
  - name: B
    ancestors: [X]
    start_time: 3000
    epochs: [{start_size: 2000}]
  - name: C
    ancestors: [A, B]
    proportions: [0.3, 0.7]
    start_time: 500
    epochs: [{start_size: 800}]
"""

PULSE = """
time_units: generations
demes:
  - name: anc
    epochs: [{{start_size: 3000, end_time: {split}}}]
  - name: A
    ancestors: [anc]
    epochs: [{{start_size: 2000}}]
  - name: B
    ancestors: [anc]
    epochs:
      - {{start_size: 1000, end_time: 300}}
      - {{start_size: 1000, end_size: {growth}, end_time: 0}}
migrations:
  - {{source: A, dest: B, rate: {rate}}}
pulses:
  - {{sources: [A], dest: B, time: {time}, proportions: [{p}]}}
"""
PULSE_VALUES = {"split": 1000.0, "rate": 1e-4, "time": 200.0, "p": 0.3, "growth": 4000}


def pulse_graph(**change):
    return demes.loads(PULSE.format(**{**PULSE_VALUES, **change}))


def min_size(graph):
    return min(min(e.start_size, e.end_size) for d in graph.demes for e in d.epochs)


def debugger_mean(graph, samples):
    """E[T] of a pair from msprime's debugger: P(T > t) from ``coalescence_rate_trajectory``
    at 256 steps per epoch, Simpson's rule between them, and past the last event the
    exponential tail ``P / r`` (one deme holds the pair then)."""
    dd = msprime.Demography.from_demes(graph).debug()
    edges = np.unique(np.concatenate([[0.0], dd.epoch_start_time]))
    blocks = [np.linspace(a, b, 257) for a, b in itertools.pairwise(edges)]
    steps = np.unique(np.concatenate([*blocks, [edges[-1] + 1.0]]))
    r, p = dd.coalescence_rate_trajectory(
        steps, samples, min_pop_size=min_size(graph), double_step_validation=False
    )
    at = {t: i for i, t in enumerate(steps)}
    total = sum(scipy.integrate.simpson(p[at[b[0]] : at[b[-1]] + 1], x=b) for b in blocks)
    last = at[edges[-1]]  # r there is the rate of the last epoch (one deme)
    return total + p[last] / r[last]


def simulate(graph, samples, reps, seed, sfs=False):
    """TMRCA (or the branch-length SFS) of each replicate, in generations."""
    sets = [msprime.SampleSet(k, population=name, ploidy=1) for name, k in samples.items()]
    out = []
    for ts in msprime.sim_ancestry(
        sets,
        demography=msprime.Demography.from_demes(graph),
        ploidy=2,
        num_replicates=reps,
        random_seed=seed,
    ):
        if sfs:
            afs = ts.allele_frequency_spectrum(mode="branch", polarised=True, span_normalise=True)
            out.append(afs[1:-1])
        else:
            tree = ts.first()
            out.append(tree.time(tree.root))
    return np.asarray(out)


def assert_within_mc(value, draws, n_se=4.0):
    mean = draws.mean(axis=0)
    se = draws.std(axis=0, ddof=1) / math.sqrt(draws.shape[0])
    z = np.abs(np.asarray(value) - mean) / se
    assert np.all(z < n_se), (value, mean, se, z)


# -- two lineages: the debugger -------------------------------------------------------------
@pytest.mark.parametrize(
    ("yaml", "samples"),
    [
        (BOTTLENECK, {"A": 2}),
        (SPLIT, {"B": 2}),
        (SPLIT, {"A": 1, "B": 1}),
        (None, {"B": 2}),
        (ADMIXTURE, {"C": 2}),
    ],
    ids=["bottleneck", "split-BB", "split-AB", "pulse", "admixture"],
)
def test_pair_coalescence_time_equals_msprime(yaml, samples):
    # the pulse without its exponential epoch (the debugger's sizes are first order there)
    graph = demes.loads(yaml) if yaml else pulse_graph(growth=1000)
    free = ["C.proportions[0]"] if yaml == ADMIXTURE else []  # the last is 1 - the others
    dm = from_demes(graph, samples, free=free)
    value = float(dm.epoch_trace().expectation(dm.theta0))
    assert value == pytest.approx(debugger_mean(graph, samples), rel=1e-10, abs=0)
    if yaml == BOTTLENECK:
        dd = msprime.Demography.from_demes(graph).debug()
        mean = dd.mean_coalescence_time(samples, rtol=1e-6, min_pop_size=min_size(graph))
        assert value == pytest.approx(mean, rel=1e-6, abs=0)


# -- more lineages: simulations -------------------------------------------------------------
@pytest.mark.parametrize(
    ("yaml", "samples", "seed"),
    [
        (BOTTLENECK, {"A": 6}, 1),
        (GROWTH, {"A": 5}, 2),
        (SPLIT, {"A": 2, "B": 3}, 3),
        (None, {"A": 2, "B": 3}, 4),
    ],
    ids=["bottleneck", "growth", "split", "pulse"],
)
def test_tmrca_of_several_lineages_equals_msprime_simulations(yaml, samples, seed):
    graph = demes.loads(yaml) if yaml else pulse_graph()
    dm = from_demes(graph, samples, tolerance=1e-4)  # Monte Carlo errors are ~5e-3
    value = float(dm.epoch_trace().expectation(dm.theta0))
    assert_within_mc(value, simulate(graph, samples, 10_000, seed))


def test_expected_sfs_equals_msprime_branch_spectrum():
    graph = demes.loads(BOTTLENECK)
    dm = from_demes(graph, {"A": 6}, sfs=True)
    assert dm.spec == "phasemake.models:block_counting" and dm.params == {"n": 6}
    et = dm.epoch_trace()
    rewards = et.history.states[:, :5].astype(float)  # state[i-1]: lineages subtending i
    sfs = np.asarray(et.expectation(dm.theta0, rewards))
    assert_within_mc(sfs, simulate(graph, {"A": 6}, 10_000, 5, sfs=True))


# -- exponential growth: the analytic reference and the bound --------------------------------
def kingman_survival(n):
    """``P(T_K > u)`` and ``∫_u^∞ P(T_K > v) dv`` for Kingman's coalescent from n lineages."""
    lam = np.array([k * (k - 1) / 2 for k in range(2, n + 1)])
    a = np.array([np.prod([lj / (lj - li) for lj in lam if lj != li]) for li in lam])
    return (lambda u: float(a @ np.exp(-lam * u))), (lambda u: float((a / lam) @ np.exp(-lam * u)))


def growth_exact(n):
    g, n_e = math.log(4) / 500, 40000.0

    def lam(t):
        return math.expm1(g * t) / (2 * n_e * g) if t <= 500 else lam(500) + (t - 500) / 20000

    surv, tail = kingman_survival(n)
    inner = scipy.integrate.quad(lambda t: surv(lam(t)), 0, 500, epsabs=0, epsrel=1e-13)[0]
    return inner + 20000 * tail(lam(500))


def piecewise_mean(rates, times, n):
    """E[T] of one deme with piecewise-constant rates (the same time change)."""
    _, tail = kingman_survival(n)
    edges, big_lam, total = [0.0, *times], 0.0, 0.0
    for k, c in enumerate(rates):
        if k == len(times):
            return total + tail(big_lam) / c
        nxt = big_lam + c * (edges[k + 1] - edges[k])
        total += (tail(big_lam) - tail(nxt)) / c
        big_lam = nxt
    raise AssertionError


def test_exponential_growth_is_within_the_tolerance_end_to_end():
    for n in (2, 5):
        dm = from_demes(demes.loads(GROWTH), {"A": n})
        value = float(dm.epoch_trace().expectation(dm.theta0))
        assert abs(value / growth_exact(n) - 1) <= 1e-6


@pytest.mark.parametrize("tolerance", [1e-2, 1e-4, 1e-6])
@pytest.mark.parametrize("n", [2, 4])
def test_the_bound_on_the_pieces_of_an_exponential_epoch(tolerance, n):
    """100-fold growth: the history's own rates against the exact E[T]; the bound is
    tight for a pair (worst case) and loose by ~100 for 4 lineages."""
    strong = GROWTH.replace("start_size: 10000, end_size", "start_size: 400, end_size")
    strong = strong.replace(
        "{start_size: 10000, end_time: 500}", "{start_size: 400, end_time: 500}"
    )
    g, n_e = math.log(100) / 500, 40000.0

    def lam(t):
        return math.expm1(g * t) / (2 * n_e * g) if t <= 500 else lam(500) + (t - 500) / 800

    surv, tail = kingman_survival(n)
    inner = scipy.integrate.quad(lambda t: surv(lam(t)), 0, 500, epsabs=0, epsrel=1e-13, limit=200)
    exact = inner[0] + 800 * tail(lam(500))
    dm = from_demes(demes.loads(strong), {"A": n}, tolerance=tolerance, max_epochs=1000)
    history = dm.history(phasemake.build_graph(dm.model, **dm.params))
    rates = np.asarray(history.rates(jnp.asarray(dm.theta0)))[:, 0]
    times = np.asarray(history.times(jnp.asarray(dm.theta0)))
    error = abs(piecewise_mean(rates, times, n) / exact - 1)
    assert error <= tolerance
    if n == 2:
        assert error > tolerance / 10


# -- free parameters --------------------------------------------------------------------------
FREE = ["B.epochs[1].end_size", "A.start_time", "pulses[0].proportions[0]", "pulses[0].time"]
FREE += ["migrations[0].rate"]


@pytest.fixture(scope="module")
def pulse_model():
    dm = from_demes(pulse_graph(), {"A": 1, "B": 2}, free=FREE, tolerance=1e-4)
    return dm, dm.epoch_trace()


def test_theta0_holds_the_files_values_in_generations():
    years = demes.loads(
        BOTTLENECK.replace("time_units: generations", "time_units: years\ngeneration_time: 25")
    )
    dm = from_demes(years, {"A": 2}, free=["A.epochs[1].end_time", "A.epochs[2].start_size"])
    assert dm.parameters == ("A.epochs[1].end_time", "A.epochs[2].start_size")
    np.testing.assert_array_equal(dm.theta0, [1500 / 25, 5000])
    dm = from_demes(pulse_graph(), {"A": 1, "B": 2}, free=FREE, tolerance=1e-4)
    np.testing.assert_array_equal(dm.theta0, [4000, 1000, 0.3, 200, 1e-4])
    assert dm.demes == ("anc", "A", "B") and dm.params == {"samples": (0, 1, 2)}
    assert phasemake.load_model(dm.spec) is dm.model
    dm = from_demes(demes.loads(ADMIXTURE), {"C": 2}, free=["C.proportions[0]", "A.start_time"])
    np.testing.assert_array_equal(dm.theta0, [0.3, 3000])
    assert dm.demes == ("X", "A", "B", "C")


def test_gradients_equal_central_differences(pulse_model):
    dm, et = pulse_model
    phi = dm.theta0
    budget = max(et.n_terms(phi * 1.01), et.n_terms(phi * 0.99))
    grad = np.asarray(jax.grad(lambda p: et.expectation(p, n_terms=budget))(jnp.asarray(phi)))
    diff = []
    for i in range(phi.size):
        step = np.zeros_like(phi)
        step[i] = 1e-5 * phi[i]
        up = float(et.expectation(phi + step, n_terms=budget))
        down = float(et.expectation(phi - step, n_terms=budget))
        diff.append((up - down) / (2 * step[i]))
    np.testing.assert_allclose(grad, diff, rtol=1e-5, atol=0)


def test_a_moved_parameter_equals_the_edited_file(pulse_model):
    _, et = pulse_model
    # the split (anc's end and both children's starts, the migration's start) moves as one
    phi = np.array([4000, 1200, 0.45, 190, 3e-4])
    edited = from_demes(
        pulse_graph(split=1200.0, p=0.45, time=190.0, rate=3e-4),
        {"A": 1, "B": 2},
        free=FREE,
        tolerance=1e-4,
    )
    np.testing.assert_array_equal(edited.theta0, phi)
    expected = float(edited.epoch_trace().expectation(edited.theta0))
    assert float(et.expectation(phi)) == pytest.approx(expected, rel=1e-10, abs=0)
    with pytest.raises(ValueError, match="boundaries"):  # the pulse after the split
        et.expectation(np.array([4000, 1000, 0.3, 1100, 1e-4]))


# -- refusals ---------------------------------------------------------------------------------
def refusal(graph, samples, match, **kw):
    with pytest.raises(PhasemakeError, match=match):
        from_demes(graph, samples, **kw)


def test_refusals_name_the_problem():
    split = demes.loads(SPLIT)
    refusal(split, {"A": 2}, r"unknown free path 'A\.epochs\[3\]\.start_size'.*A\.start_time",
            free=["A.epochs[3].start_size"])  # fmt: skip
    refusal(split, {"A": 2}, r"'migrations\[0\]\.end_time'", free=["migrations[0].end_time"])
    refusal(split, {"A": 2, "B": 1}, "one boundary", free=["A.start_time", "B.start_time"])
    refusal(split, {"A": 2, "B": 1}, "sfs=True needs one deme", sfs=True)
    refusal(split, {"C": 2}, "the demes are")
    refusal(split, {"A": 1}, "at least 2 lineages")
    b = demes.Builder()
    b.add_deme("X", epochs=[dict(start_size=100)])
    b.add_deme("Y", epochs=[dict(start_size=100)])
    b.add_deme("Z", ancestors=["X"], start_time=50, epochs=[dict(start_size=100, end_time=10)])
    isolated = b.resolve()
    refusal(isolated, {"X": 1, "Y": 1}, "never meet")
    refusal(isolated, {"Z": 2}, "ancient samples")
    refusal(
        isolated, {"X": 2}, "cannot affect the sampled lineages", free=["Y.epochs[0].start_size"]
    )
    unsupported = [
        ("selfing_rate: 0.1", "selfing_rate"),
        ("cloning_rate: 0.1", "cloning_rate"),
        ("end_size: 100, size_function: linear", "size_function 'linear'"),
    ]
    for field, match in unsupported:
        text = BOTTLENECK.replace(
            "{start_size: 5000, end_time: 0}", f"{{start_size: 5000, {field}}}"
        )
        refusal(demes.loads(text), {"A": 2}, match)
