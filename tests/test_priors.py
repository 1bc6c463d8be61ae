"""The priors of aae_core.priors: the contract every prior keeps (parametrized over PRIORS, so a
new prior is under test the moment it is added), then known answers for each one.

References are computed independently: scipy.stats densities, per-component loops, numerical
integration on a grid, and closed-form probabilities.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch
import torch.nn.functional as F
from cuda_helpers import cuda, host_syncs

from aae_core import priors
from aae_core.priors import PRIORS, make_prior

# Constructor arguments for the generic tests; a prior missing here is built with its defaults.
PARAMS = {"gaussian": dict(dim=3, std=2.0), "categorical": dict(dim=10)}
# 2-D versions, for the density tests (integration on a grid).
PARAMS_2D = {"gaussian": dict(dim=2, std=1.0)}
# Priors the paper conditions on labels, and the attribute holding their number of classes.
CLASSES = {"mixture": "components", "swiss-roll": "classes", "categorical": "dim"}


def make(name: str, two_d: bool = False):
    params = PARAMS_2D.get(name, PARAMS.get(name, {})) if two_d else PARAMS.get(name, {})
    return make_prior(name, **params)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message, repr(message)
    return message


# -- the contract of every prior ------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_make_prior_builds_the_named_class(name):
    assert isinstance(make(name), PRIORS[name])


@pytest.mark.parametrize("name", sorted(PRIORS))
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_shape_dtype_finite(name, n):
    prior = make(name)
    z = prior.sample(n, gen(0))
    assert z.shape == (n, prior.dim) and z.dtype == torch.float32
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_same_seed_same_draws_other_seed_other_draws(name):
    prior = make(name)
    a, b, c = prior.sample(500, gen(1)), prior.sample(500, gen(1)), prior.sample(500, gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    if name in CLASSES:  # label-conditioned draws are reproducible too
        k = getattr(prior, CLASSES[name])
        labels = torch.arange(500) % (k + 1) - 1  # -1 (unlabelled) and every class
        a, b = prior.sample(500, gen(3), labels=labels), prior.sample(500, gen(3), labels=labels)
        assert torch.equal(a, b)
        assert not torch.equal(a, prior.sample(500, gen(4), labels=labels))


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_draws_leave_the_global_stream_alone(name):
    """A trial's prior stream must not shift weight init or anything else on the global RNG."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    make(name).sample(100, gen(0))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("bad", ["too_big", "below_minus_one", "too_long", "column"])
def test_bad_labels_one_line_value_error(name, bad):
    prior = make(name)
    k = getattr(prior, CLASSES[name])
    n = 6
    labels = {"too_big": torch.full((n,), k), "below_minus_one": torch.full((n,), -2),
              "too_long": torch.zeros(n + 1, dtype=torch.long),
              "column": torch.zeros(n, 1, dtype=torch.long)}[bad]
    with pytest.raises(ValueError) as exc:
        prior.sample(n, gen(0), labels=labels)
    message = one_line(exc)
    assert ("shape" in message) if bad in ("too_long", "column") else (f"-1..{k - 1}" in message)


@pytest.mark.parametrize("name,params", [
    ("gaussian", dict(dim=0)),
    ("gaussian", dict(dim=2, std=0.0)),
    ("gaussian", dict(dim=2, std=-1.0)),
    ("gaussian", dict(dim=2, std=math.nan)),
    ("mixture", dict(dim=3)),
    ("mixture", dict(components=0)),
    ("mixture", dict(radius=0.0)),
    ("mixture", dict(radius=-1.4)),
    ("mixture", dict(std_radial=0.0)),
    ("mixture", dict(std_tangential=-0.05)),
    ("swiss-roll", dict(dim=3)),
    ("swiss-roll", dict(classes=0)),
    ("categorical", dict(dim=1)),
])
def test_bad_constructor_values_one_line_value_error(name, params):
    with pytest.raises(ValueError) as exc:
        make_prior(name, **params)
    one_line(exc)


def test_unknown_name_lists_every_valid_one():
    with pytest.raises(ValueError) as exc:
        make_prior("nope")
    message = one_line(exc)
    assert "'nope'" in message
    assert all(name in message for name in PRIORS)


def _density_on_cells(prior, half: float, n_cells: int, per_cell: int) -> np.ndarray:
    """Mass of each cell of an n_cells x n_cells grid over [-half, half]^2, by the midpoint rule
    on per_cell x per_cell points per cell (float64)."""
    h = 2 * half / (n_cells * per_cell)
    centres = -half + h * (np.arange(n_cells * per_cell) + 0.5)
    mass = np.zeros((n_cells, n_cells))
    for i in range(n_cells):  # one strip of cells at a time: bounded memory
        xs = centres[i * per_cell:(i + 1) * per_cell]
        grid = np.stack(np.meshgrid(xs, centres, indexing="ij"), -1).reshape(-1, 2)
        p = prior.log_prob(torch.from_numpy(grid)).exp().numpy().reshape(per_cell, -1)
        mass[i] = p.sum(0).reshape(n_cells, per_cell).sum(1) * h * h
    return mass


@pytest.mark.parametrize("name", sorted(n for n in PRIORS if hasattr(PRIORS[n], "log_prob")))
def test_log_prob_is_the_density_of_the_samples(name):
    """Every prior with a density (2-D version): the density integrates to 1 over a box, and the
    mass it puts on each cell of a 10 x 10 grid matches the fraction of 200,000 draws there
    (measured: at most 1.5 sd off; a mixture with std_radial 0.45 instead of 0.5 is 8.6 sd off)."""
    prior = make(name, two_d=True)
    assert prior.dim == 2
    n = 200_000
    z = prior.sample(n, gen(5)).double().numpy()
    half = math.ceil(np.abs(z).max() + 1.0)
    mass = _density_on_cells(prior, half, n_cells=10, per_cell=40)
    assert mass.sum() == pytest.approx(1.0, abs=1e-3)
    counts, _, _ = np.histogram2d(z[:, 0], z[:, 1], bins=10, range=[[-half, half]] * 2)
    frequency = counts / n
    sd = np.sqrt(mass * (1 - mass) / n) + 1e-4
    assert np.max(np.abs(frequency - mass) / sd) < 5


# -- Gaussian -------------------------------------------------------------------------------


@pytest.mark.parametrize("dim,std", [(1, 0.5), (3, 2.0), (10, 5.0)])
def test_gaussian_moments(dim, std):
    z = priors.Gaussian(dim, std).sample(100_000, gen(0)).double()
    assert z.shape == (100_000, dim)
    assert torch.all(z.mean(0).abs() < 5 * std / math.sqrt(100_000))
    cov = torch.cov(z.T).reshape(dim, dim) / std**2
    assert torch.allclose(cov, torch.eye(dim, dtype=torch.float64), atol=0.02)


@pytest.mark.parametrize("dim,std", [(1, 0.5), (2, 1.0), (8, 5.0)])
def test_gaussian_log_prob_matches_scipy(dim, std):
    z = torch.from_numpy(np.random.default_rng(0).normal(0, 2 * std, (300, dim)))
    expected = scipy.stats.multivariate_normal(np.zeros(dim), std**2 * np.eye(dim)).logpdf(z.numpy())
    expected = np.atleast_1d(expected)
    by_coordinate = scipy.stats.norm(0, std).logpdf(z.numpy()).sum(1)
    got = priors.Gaussian(dim, std).log_prob(z)
    assert got.shape == (300,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(got.numpy(), by_coordinate, rtol=1e-10)


# -- mixture of 10 Gaussians ---------------------------------------------------------------


def _frames(k: int = 10):
    """Unit radial and tangential vectors of each component, from angles 2 pi j / k (float64)."""
    angle = 2 * np.pi * np.arange(k) / k
    radial = np.stack([np.cos(angle), np.sin(angle)], 1)
    return radial, np.stack([-radial[:, 1], radial[:, 0]], 1)


def _wedge_probability(radius=1.4, std_radial=0.5, std_tangential=0.05, k=10) -> float:
    """P(a draw of component j is nearest centre j). The centres share one radius, so the
    nearest-centre cells are wedges of half-angle pi/k around each centre's ray; a draw
    (radius + a) u + b t lies in its wedge iff radius + a > 0 and |b| < tan(pi/k) (radius + a)."""
    t = math.tan(math.pi / k)

    def integrand(a):
        inside = 2 * scipy.stats.norm.cdf(t * (radius + a) / std_tangential) - 1
        return scipy.stats.norm.pdf(a, 0, std_radial) * inside

    value, _ = scipy.integrate.quad(integrand, -radius, radius + 20 * std_radial, limit=200)
    return value


def test_mixture_centres():
    radial, _ = _frames()
    np.testing.assert_allclose(priors.GaussianMixture().centres().double().numpy(), 1.4 * radial, atol=1e-6)


def test_mixture_labelled_draws_lie_nearest_their_centre():
    """Fraction of draws of component k that lie nearest centre k: the elongation (std 0.5 along
    a radius of 1.4) carries a few across the origin, so it is not 1. Its exact value (0.9939
    for the default constants) follows from the geometry (_wedge_probability); 100,000 draws
    measure it to +-0.0003 (one sd). A frame error (noise not rotated with the component, or
    the two stds swapped) gives about 0.6, and ignoring the label 0.1."""
    prior = priors.GaussianMixture()
    n = 100_000
    labels = torch.arange(n) % 10
    z = prior.sample(n, gen(0), labels=labels).double().numpy()
    centres = 1.4 * _frames()[0]
    nearest = ((z[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    fraction = float((nearest == labels.numpy()).mean())
    expected = _wedge_probability()
    assert fraction >= 0.98
    assert abs(fraction - expected) < 5 * math.sqrt(expected * (1 - expected) / n)


def test_mixture_spread_in_each_components_frame():
    prior = priors.GaussianMixture()
    n = 20_000
    radial, tangential = _frames()
    for k in range(10):
        z = prior.sample(n, gen(k), labels=torch.full((n,), k)).double().numpy()
        d = z - 1.4 * radial[k]
        along, across = d @ radial[k], d @ tangential[k]
        assert abs(along.mean()) < 5 * 0.5 / math.sqrt(n) and abs(across.mean()) < 5 * 0.05 / math.sqrt(n)
        assert along.std() == pytest.approx(0.5, rel=0.03)
        assert across.std() == pytest.approx(0.05, rel=0.03)
        assert abs(np.corrcoef(along, across)[0, 1]) < 0.04


@pytest.mark.parametrize("unlabelled", ["none", "minus_one"])
def test_mixture_unlabelled_draws_cover_every_component(unlabelled):
    prior = priors.GaussianMixture()
    n = 100_000
    labels = None if unlabelled == "none" else torch.full((n,), -1)
    z = prior.sample(n, gen(0), labels=labels).double().numpy()
    angle = np.arctan2(z[:, 1], z[:, 0])  # the wedge of component j is centred on 2 pi j / 10
    wedge = np.round(angle / (2 * np.pi / 10)).astype(int) % 10
    frequency = np.bincount(wedge, minlength=10) / n
    # about 0.6 % of draws land in the opposite wedge (see above); symmetric, so still uniform
    assert np.all(np.abs(frequency - 0.1) < 5 * math.sqrt(0.09 / n))


def test_mixture_log_prob_integrates_to_one():
    # A grid sum of a smooth, fast-decaying density is exact up to exp(-2 pi^2 std^2 / h^2)
    # (Poisson summation); with the narrowest std 0.05 and h = 0.02 that is exp(-123).
    h = 0.02
    xs = torch.arange(-3.6, 3.6 + h / 2, h, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    total = float(priors.GaussianMixture().log_prob(grid).exp().sum()) * h * h
    assert total == pytest.approx(1.0, abs=1e-4)  # outside the box: < 2e-5 of the mass


def test_mixture_log_prob_matches_a_per_component_scipy_sum():
    radial, tangential = _frames()
    z = np.random.default_rng(0).uniform(-3, 3, (2000, 2))
    density = np.zeros(len(z))
    for k in range(10):
        frame = np.stack([radial[k], tangential[k]], 1)  # columns: along, across
        cov = frame @ np.diag([0.5**2, 0.05**2]) @ frame.T
        density += scipy.stats.multivariate_normal(1.4 * radial[k], cov).pdf(z) / 10
    keep = density > 1e-300  # the reference underflows far from every component
    got = priors.GaussianMixture().log_prob(torch.from_numpy(z)).numpy()
    assert got.shape == (2000,) and keep.mean() > 0.9
    np.testing.assert_allclose(got[keep], np.log(density[keep]), rtol=1e-5)
    assert np.all(np.isfinite(got))  # logsumexp stays finite where the plain sum underflows


# -- swiss roll -----------------------------------------------------------------------------


def _roll_parameter(z: torch.Tensor) -> np.ndarray:
    r = np.sqrt((z.double().numpy() ** 2).sum(1))
    return (r / 3) ** 2  # r = 3 sqrt(u)


def test_swiss_roll_labelled_draws_fill_their_slice_in_label_order():
    n = 50_000
    labels = torch.arange(n) % 10
    z = priors.SwissRoll().sample(n, gen(0), labels=labels)
    u = _roll_parameter(z)
    eps = 1e-6  # float32 output
    for k in range(10):
        uk = u[labels.numpy() == k]
        assert uk.min() >= k / 10 - eps and uk.max() < (k + 1) / 10 + eps
        # uniform within the slice: mean in the middle, both ends reached
        assert uk.mean() == pytest.approx((k + 0.5) / 10, abs=5 * 0.029 / math.sqrt(len(uk)))
        assert uk.min() < k / 10 + 0.002 and uk.max() > (k + 1) / 10 - 0.002
    # the angle follows the radius: theta = 4 pi sqrt(u)
    zz = z.double().numpy()
    r = np.sqrt((zz**2).sum(1))
    theta = 4 * np.pi * np.sqrt(u)
    far = r > 1e-2
    np.testing.assert_allclose(zz[far] / r[far, None], np.stack([np.cos(theta), np.sin(theta)], 1)[far],
                               atol=1e-4)


@pytest.mark.parametrize("unlabelled", ["none", "minus_one"])
def test_swiss_roll_unlabelled_draws_cover_the_whole_roll(unlabelled):
    n = 50_000
    labels = None if unlabelled == "none" else torch.full((n,), -1)
    u = _roll_parameter(priors.SwissRoll().sample(n, gen(0), labels=labels))
    assert u.min() >= 0 and u.max() < 1 + 1e-6
    assert scipy.stats.kstest(np.clip(u, 0, 1), "uniform").pvalue > 1e-3


def test_swiss_roll_mixed_labels():
    n = 20_000
    labels = torch.where(torch.arange(n) % 2 == 0, torch.tensor(3), torch.tensor(-1))
    u = _roll_parameter(priors.SwissRoll().sample(n, gen(0), labels=labels))
    labelled, free = u[labels.numpy() == 3], u[labels.numpy() == -1]
    assert labelled.min() >= 0.3 - 1e-6 and labelled.max() < 0.4 + 1e-6
    assert scipy.stats.kstest(np.clip(free, 0, 1), "uniform").pvalue > 1e-3


# -- categorical ----------------------------------------------------------------------------


def test_categorical_labels_give_exactly_their_one_hot():
    labels = torch.arange(1000) % 7
    y = priors.Categorical(7).sample(1000, gen(0), labels=labels)
    assert torch.equal(y, F.one_hot(labels, 7).float())


def test_categorical_unlabelled_rows_are_uniform_one_hots():
    n = 100_000
    labels = torch.where(torch.arange(n) < 1000, torch.tensor(2), torch.tensor(-1))
    y = priors.Categorical(10).sample(n, gen(0), labels=labels)
    assert torch.equal(y.sum(1), torch.ones(n)) and set(torch.unique(y).tolist()) == {0.0, 1.0}
    assert torch.all(y[:1000, 2] == 1)
    frequency = y[1000:].mean(0).double().numpy()
    assert np.all(np.abs(frequency - 0.1) < 5 * math.sqrt(0.09 / (n - 1000)))
    free = priors.Categorical(10).sample(n, gen(1)).mean(0).double().numpy()
    assert np.all(np.abs(free - 0.1) < 5 * math.sqrt(0.09 / n))


# -- devices and caches (#18 item 5) --------------------------------------------------------


def test_mixture_log_prob_builds_its_centres_once_per_device_and_dtype(monkeypatch):
    """The VAE's KL calls log_prob every step: the centres are made once per (device, dtype),
    not built (or copied to the device) each time, and the density has the bits it had when
    they were built inline."""
    priors._mixture_frame.cache_clear()
    built = []
    original = priors.GaussianMixture.centres
    monkeypatch.setattr(priors.GaussianMixture, "centres", lambda self: built.append(1) or original(self))
    prior = priors.GaussianMixture(6, 2.0)
    for dtype in (torch.float32, torch.float64):
        z = torch.randn(300, 2, generator=gen(0), dtype=dtype) * 2
        got = [prior.log_prob(z) for _ in range(3)]
        centres = original(prior).to(z)  # the inline computation the cache replaced
        radial = centres / prior.radius
        d = z[:, None, :] - centres[None]
        a, b = (d * radial).sum(-1), d[..., 1] * radial[:, 0] - d[..., 0] * radial[:, 1]
        inline = torch.logsumexp(-0.5 * ((a / 0.5) ** 2 + (b / 0.05) ** 2)
                                 - math.log(2 * math.pi * 0.5 * 0.05), 1) - math.log(6)
        assert all(torch.equal(g, inline) for g in got)
    assert len(built) == 2  # once for float32, once for float64


def test_mixture_draws_build_no_tensor_from_host_values_after_the_first(monkeypatch):
    """Its stds are a tensor made once per device (on a GPU, torch.tensor([...]) each step is a
    copy from the host)."""
    prior = priors.GaussianMixture()
    first = prior.sample(50, gen(0), labels=torch.arange(50) % 11 - 1)
    made = []
    original = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or original(*a, **k))
    again = prior.sample(50, gen(0), labels=torch.arange(50) % 11 - 1)
    assert made == [] and torch.equal(first, again)


def test_labels_on_an_accelerator_are_checked_without_a_host_read():
    """`meta` stands in for a GPU: its values cannot be read on the host (any read raises), so
    these calls prove that checking device labels never waits on the device. The shape is still
    checked on the host (it is known there), and labels are moved to the draws' device."""
    meta = torch.device("meta")
    labels = torch.zeros(6, dtype=torch.long, device=meta)
    assert priors._labels_on(labels, 6, 10, meta).device == meta
    assert priors._labels_on(torch.arange(6), 6, 10, meta).device == meta  # CPU labels are moved
    with pytest.raises(ValueError, match="shape"):
        priors._labels_on(torch.zeros(7, dtype=torch.long, device=meta), 6, 10, meta)
    with pytest.raises(ValueError, match=r"-1\.\.9"):  # on the CPU: checked at once
        priors._labels_on(torch.full((6,), 10), 6, 10, torch.device("cpu"))


@cuda
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_cuda_label_conditioned_draws_stay_on_the_device(name):
    """Labels and generator on the GPU: the draws are made there, honour the labels, and the
    host never waits (no .cpu(), no check that reads the labels back, no constant copied)."""
    prior = make(name)
    k = getattr(prior, CLASSES[name])
    device = torch.device("cuda")
    labels = (torch.arange(1000, device=device) % (k + 1)) - 1
    generator = torch.Generator(device=device).manual_seed(0)
    prior.sample(1000, generator, labels=labels)  # warm: caches fill
    draws = []
    assert host_syncs(lambda: draws.append(prior.sample(1000, generator, labels=labels))) == 0
    z = draws[0]
    assert z.device.type == "cuda" and z.shape == (1000, prior.dim)
    again = prior.sample(1000, torch.Generator(device=device).manual_seed(0), labels=labels)
    assert torch.equal(again, prior.sample(1000, torch.Generator(device=device).manual_seed(0), labels=labels))
    if name == "categorical":
        known = labels >= 0
        assert torch.equal(z[known].argmax(1), labels[known])


@cuda
def test_cuda_mixture_log_prob_copies_nothing_after_the_first_call():
    prior = priors.GaussianMixture()
    z = torch.randn(500, 2, device="cuda") * 2
    expected = prior.log_prob(z.cpu())
    prior.log_prob(z)  # warm
    out = []
    assert host_syncs(lambda: out.append(prior.log_prob(z))) == 0
    torch.testing.assert_close(out[0].cpu(), expected, rtol=1e-5, atol=1e-5)
