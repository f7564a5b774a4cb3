import math
import warnings

import numpy as np
import pytest
import torch

from helpers import gd


@pytest.fixture(scope="module")
def reg2():
    return gd.diabetes_regression(("s1", "s2"))


@pytest.fixture(scope="module")
def reg():
    return gd.diabetes_regression(("bmi", "bp", "s5"), intercept=True)


@pytest.fixture(scope="module")
def logit():
    return gd.diabetes_classification(("bmi", "s5"))


# ------------------------------------------------------------------ problems and gradients
def _autograd(problem, w, idx=None):
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    problem.torch_loss(wt, idx).backward()
    return wt.grad.numpy()


def _central_difference(problem, w, h=1e-6):
    E = np.eye(problem.dim) * h
    return np.array([(problem.loss(w + e) - problem.loss(w - e)) / (2 * h) for e in E])


@pytest.mark.parametrize("name", ["reg", "logit", "quad"])
def test_gradient_matches_autograd_and_finite_differences(name, reg, logit):
    problem = {"reg": reg, "logit": logit, "quad": gd.quadratic(7.0, L=2.0, angle_deg=20, center=(1, -1))}[name]
    w = np.random.default_rng(1).normal(size=problem.dim)
    g = problem.grad(w)
    np.testing.assert_allclose(g, _autograd(problem, w), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g, _central_difference(problem, w), rtol=1e-6, atol=1e-8)
    assert math.isclose(problem.loss(w), float(problem.torch_loss(torch.tensor(w))), rel_tol=1e-12)
    if problem.n_examples > 1:
        idx = np.array([3, 17, 17, 400])
        np.testing.assert_allclose(problem.grad(w, idx), _autograd(problem, w, idx), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(problem.per_example_grad(w).mean(axis=0), g, rtol=1e-12, atol=1e-14)


def test_vectorised_over_runs_equals_one_by_one(reg):
    W = np.random.default_rng(2).normal(size=(5, reg.dim))
    loss_1, grad_1 = [reg.loss(w) for w in W], np.array([reg.grad(w) for w in W])
    np.testing.assert_allclose(reg.loss(W), loss_1, rtol=0, atol=1e-12 * np.abs(loss_1).max())
    np.testing.assert_allclose(reg.grad(W), grad_1, rtol=0, atol=1e-12 * np.abs(grad_1).max())


def test_problem_facts(reg2, logit):
    assert reg2.n_examples == 442 and reg2.dim == 2
    assert math.isclose(reg2.loss(np.zeros(2)), 1.0, rel_tol=1e-12)  # standardised target
    np.testing.assert_allclose(reg2.grad(reg2.minimiser), 0, atol=1e-12)
    assert 15 < reg2.kappa < 22  # s1 and s2 correlate at r = 0.90
    assert np.linalg.norm(logit.grad(logit.minimiser)) < 1e-10
    assert logit.y.sum() == 221  # balanced: above/below the median
    s = gd.nonconvex_surface()
    assert len(s.minima) == 4 and s.minimiser[0] < 0 and s.minimiser[1] < 0
    for m, _ in s.minima:
        np.testing.assert_allclose(s.grad(m), 0, atol=1e-9)
        assert np.linalg.eigvalsh(gd.numeric_hessian(s, m))[0] > 0


# ----------------------------------------------------------------------- the d2l example
def test_reproduces_d2l_one_dimensional_runs():
    # d2l.ai "Gradient Descent" (11.3.1): f(x) = x^2 from x = 10, 10 steps, prints x with {x:f}
    runs = gd.optimize(gd.Quadratic([[2.0]]), [0.2, 0.05, 1.1], steps=10, w0=[10.0])
    assert [f"{x:f}" for x in runs.final_params[:, 0]] == ["0.060466", "3.486784", "61.917364"]
    xcos = gd.optimize(gd.xcos_surface(), 2.0, steps=10, w0=[10.0])  # d2l: "epoch 10, x: -1.528166"
    assert f"{xcos.final_params[0, 0]:f}" == "-1.528166"
    ell = gd.optimize(gd.Quadratic(np.diag([2.0, 4.0])), 0.1, steps=20, w0=[-5.0, -2.0])
    assert [f"{v:f}" for v in ell.final_params[0]] == ["-0.057646", "-0.000073"]  # d2l 11.3.2


# ------------------------------------------------------------------------------ theory
def test_contraction_rates_on_quadratic():
    q = gd.quadratic(10.0, L=2.0, angle_deg=35.0)
    L, mu, k = q.L, q.mu, q.kappa
    w0 = np.array([1.3, -0.4])
    runs = gd.optimize(q, [1 / L, 2 / (L + mu)], steps=40, w0=w0)
    ratios = gd.error_ratios(runs.params, q.minimiser)
    # step 1/L: the stiff direction is solved in one step, then the error shrinks by 1 - 1/kappa
    np.testing.assert_allclose(ratios[1:, 0], 1 - 1 / k, rtol=1e-9)
    # step 2/(L+mu): both directions shrink by (kappa-1)/(kappa+1) every step
    np.testing.assert_allclose(ratios[:, 1], (k - 1) / (k + 1), rtol=1e-9)
    assert math.isclose(gd.contraction_factor(q.H, 1 / L), 1 - 1 / k, rel_tol=1e-12)
    assert math.isclose(gd.contraction_factor(q.H, 2 / (L + mu)), (k - 1) / (k + 1), rel_tol=1e-12)


def test_any_step_above_two_over_L_diverges():
    q = gd.quadratic(10.0, L=2.0, angle_deg=35.0)
    factors = np.array([0.99, 1.01, 1.1, 1.5, 3.0])
    runs = gd.optimize(q, factors * 2 / q.L, steps=2000, w0=[1.0, 1.0])
    assert runs.diverged.tolist() == [False, True, True, True, True]
    assert runs.final_loss[0] < 1e-10 * runs.loss[0, 0]
    assert all(gd.contraction_factor(q.H, f * 2 / q.L) > 1 for f in factors[1:])


def test_heavy_ball_optimum_rate():
    q = gd.quadratic(100.0, L=1.0, angle_deg=10.0)
    lr, beta, rate = gd.heavy_ball_optimum(q.L, q.mu)
    assert math.isclose(rate, (10 - 1) / (10 + 1), rel_tol=1e-12)
    runs = gd.optimize(q, lr, optimizer="momentum", momentum=beta, steps=200, w0=[1.0, 1.0])
    err = np.linalg.norm(runs.params[:, 0] - q.minimiser, axis=1)
    measured = (err[150] / err[50]) ** (1 / 100)
    assert abs(measured / rate - 1) < 0.02  # double root: k * rate^k, so slightly above rate


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_stability_limits(optimizer):
    q = gd.Quadratic([[1.0]])
    limit = gd.stability_limit(optimizer, 0.9) * 2  # in units of 1/L with L = 1
    runs = gd.optimize(q, [0.97 * limit, 1.03 * limit], optimizer=optimizer, momentum=0.9, steps=3000, w0=[1.0])
    assert runs.diverged.tolist() == [False, True]
    assert gd.stability_limit("adam") is None


def test_noise_ball_matches_closed_form():
    a, sigma, lrs, chains = 2.0, 0.5, np.array([0.02, 0.2, 0.8]), 300
    runs = gd.optimize(gd.Quadratic([[a]]), np.repeat(lrs, chains), steps=1500, grad_noise=sigma, w0=[0.0], seed=3)
    x = runs.params[500:, :, 0].reshape(-1, len(lrs), chains)
    measured = (x**2).mean(axis=(0, 2))
    np.testing.assert_allclose(measured, gd.noise_ball_variance(a, sigma, lrs), rtol=0.06)
    with pytest.raises(ValueError, match="lr"):
        gd.noise_ball_variance(a, sigma, 1.0)  # lr * a = 2: no stationary distribution


def test_gradient_noise_variance_falls_like_one_over_b(reg):
    bs = np.array([1, 2, 4, 8, 16, 32, 64, 128])
    v, s2 = gd.gradient_noise_variance(reg, np.zeros(reg.dim), bs, samples=3000, seed=1)
    assert abs(gd.loglog_slope(bs, v) + 1) < 0.05
    np.testing.assert_allclose(v, gd.minibatch_variance_theory(s2, reg.n_examples, bs), rtol=0.1)
    v2, _ = gd.gradient_noise_variance(reg, np.zeros(reg.dim), bs, samples=3000, seed=1, replace=False)
    np.testing.assert_allclose(v2, gd.minibatch_variance_theory(s2, reg.n_examples, bs, replace=False), rtol=0.1)


# ------------------------------------------------------------- equality with torch.optim
@pytest.mark.parametrize("optimizer", gd.OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [None, 1, 7])
def test_from_scratch_equals_torch_optim(reg, optimizer, batch_size):
    lrs = [0.003, 0.02] if optimizer != "adam" else [0.01, 0.05]
    kw = dict(steps=60, batch_size=batch_size, optimizer=optimizer, momentum=0.8, w0=[0.5, -0.2, 0.1, 0.3], seed=4)
    runs = gd.optimize(reg, lrs, **kw)  # both rates in one vectorised call
    for r, lr in enumerate(lrs):
        ref = gd.torch_reference(reg, lr, **kw)
        np.testing.assert_allclose(runs.params[:, r], ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["nesterov", "adam"])
def test_torch_equality_with_schedule_and_logistic(logit, optimizer):
    sched = gd.LRSchedule("cosine", warmup=5, min_factor=0.1)
    kw = dict(steps=50, batch_size=16, optimizer=optimizer, schedule=sched, seed=2, betas=(0.8, 0.99))
    runs = gd.optimize(logit, 0.3, **kw)
    np.testing.assert_allclose(runs.params[:, 0], gd.torch_reference(logit, 0.3, **kw), rtol=1e-12, atol=1e-14)


def _torch_factors(make, steps):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return np.array(out)


def test_schedules_equal_torch_schedulers():
    S, steps = torch.optim.lr_scheduler, 60
    cases = [
        (gd.LRSchedule("step", gamma=0.3, step_size=7), lambda o: S.StepLR(o, step_size=7, gamma=0.3)),
        (gd.LRSchedule("exponential", gamma=0.95), lambda o: S.ExponentialLR(o, gamma=0.95)),
        (gd.LRSchedule("cosine", min_factor=0.05), lambda o: S.CosineAnnealingLR(o, T_max=steps, eta_min=0.05)),
        (gd.LRSchedule("warmup", warmup=10), lambda o: S.LinearLR(o, start_factor=0.1, total_iters=9)),
    ]
    for mine, make in cases:
        np.testing.assert_allclose(mine.factors(steps), _torch_factors(make, steps), rtol=1e-10, err_msg=mine.name)
    inv = gd.LRSchedule("inverse_time", decay=0.5).factors(4)
    np.testing.assert_allclose(inv, [1, 1 / 1.5, 1 / 2, 1 / 2.5])
    np.testing.assert_allclose(gd.LRSchedule("constant").factors(3), 1.0)


# ---------------------------------------------------------------------- the loop itself
def test_batch_order_reshuffles_every_epoch():
    order = gd.batch_order(10, 4, 9, seed=0)  # 3 batches per epoch: 4, 4, 2
    assert [len(b) for b in order] == [4, 4, 2] * 3
    epochs = [np.sort(np.concatenate(order[i:i + 3])) for i in (0, 3, 6)]
    assert all((e == np.arange(10)).all() for e in epochs)
    assert not np.array_equal(np.concatenate(order[0:3]), np.concatenate(order[3:6]))
    assert gd.batch_order(10, 10, 3) == [None] * 3


def test_loop_bookkeeping(reg):
    runs = gd.optimize(reg, [0.01, 0.1], epochs=3, batch_size=100)
    assert runs.steps == 3 * 5 and runs.grad_evals[-1] == 3 * 442
    assert runs.epoch_ends.tolist() == [0, 5, 10, 15]
    assert runs.loss_per_epoch.shape == (4, 2) and runs.grad_norm.shape == (15, 2)
    assert np.all(np.diff(runs.seconds) >= 0)
    full = gd.optimize(reg, 0.1, steps=5)
    same = gd.optimize(reg, 0.1, steps=5, batch_size=442)
    np.testing.assert_array_equal(full.params, same.params)
    single = gd.optimize(reg, 0.1, epochs=3, batch_size=100)  # vectorised run r == a run on its own
    # different BLAS kernels sum in different orders: allow float reassociation at the scale
    # of the parameters (eps ~ 2e-16, x a few hundred operations), never exact equality
    scale = np.abs(single.params).max()
    np.testing.assert_allclose(runs.params[:, 1], single.params[:, 0], rtol=0, atol=1e-12 * scale)


def test_divergence_is_reported_without_warnings_or_nan_plots(reg2):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow RuntimeWarning would fail the test
        runs = gd.optimize(reg2, [0.1, 2.0 / reg2.L * 1.5, 1e200], steps=100, w0=[-1.0, 0.0])
    assert runs.diverged.tolist() == [False, True, True]
    assert runs.report()[0].startswith("lr 0.1: loss ")
    assert runs.diverged_at[2] == 1
    for r in (1, 2):
        k = runs.diverged_at[r]
        assert runs.message(r) == f"diverged at step {k}: loss exceeded {runs.threshold[r]:.3g}"
        assert np.isnan(runs.loss[k + 1:, r]).all()
        assert np.isfinite(runs.loss[: runs.valid(r), r]).all()
        assert np.isfinite(runs.params[: runs.valid(r), r]).all()
    assert runs.final_loss[1] == np.inf
    assert re_match(r"lr 1e\+200: diverged at step 1: loss exceeded 2\.42e\+06", runs.report()[2])


def re_match(pattern, text):
    import re

    return re.fullmatch(pattern, text) is not None


def test_nonconvex_start_and_rate_decide_the_minimum():
    s = gd.nonconvex_surface()
    runs = gd.optimize(s, [0.05, 0.18], steps=300, w0=[1.6, 1.6])
    reached = [s.nearest_minimum(w, 1e-6) for w in runs.final_params]
    assert reached[0] == 3 and reached[1] == 0  # small step: worst local minimum; larger: global
    corners = [[1.6, 1.6], [-1.6, 1.6], [1.6, -1.6], [-1.6, -1.6]]
    by_start = gd.optimize(s, 0.05, steps=300, w0=corners)  # one rate, four starts
    assert by_start.n_runs == 4 and np.all(by_start.lrs == 0.05)
    assert [s.nearest_minimum(w, 1e-6) for w in by_start.final_params] == [3, 1, 2, 0]


def test_lr_range_test_brackets_the_cliff(reg):
    rt = gd.lr_range_test(reg, 1e-4, 10.0, steps=80, batch_size=32)
    assert rt.suggestion < 2 / reg.L < rt.lrs[rt.stopped_at]
    assert not gd.optimize(reg, rt.suggestion, epochs=5, batch_size=32).diverged[0]


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"lr": 0.0}, ValueError, "lr must be finite and > 0"),
        ({"lr": -0.1}, ValueError, "lr"),
        ({"lr": float("nan")}, ValueError, "lr"),
        ({"lr": float("inf")}, ValueError, "lr"),
        ({"lr": []}, ValueError, "lr"),
        ({"lr": "fast"}, ValueError, "lr"),
        ({"batch_size": 0}, ValueError, r"batch_size must be in \[1, 442\], got 0"),
        ({"batch_size": 443}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"optimizer": "lion"}, ValueError, r"optimizer must be one of .*got 'lion'"),
        ({"schedule": "linear"}, ValueError, r"schedule='linear' is not known; allowed: 'constant'"),
        ({"schedule": 3}, TypeError, "schedule"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": None}, ValueError, "exactly one of steps or epochs"),
        ({"epochs": 2}, ValueError, "exactly one of steps or epochs"),
        ({"w0": [1.0, 2.0, 3.0]}, ValueError, r"w0 must have shape \(2,\)"),
        ({"lr": [0.1, 0.2], "w0": np.zeros((3, 2))}, ValueError, "w0 has 3 rows but there are 2 learning rates"),
        ({"w0": [np.nan, 0.0]}, ValueError, "w0 must be finite"),
        ({"momentum": 1.0}, ValueError, "momentum"),
        ({"betas": (0.9,)}, ValueError, "betas"),
        ({"grad_noise": -1.0}, ValueError, "grad_noise"),
        ({"seed": -3}, ValueError, "seed must be >= 0"),
    ],
)
def test_bad_input_names_the_argument(reg2, kwargs, exc, match):
    args = {"lr": 0.1, "steps": 5} | kwargs
    with pytest.raises(exc, match=match):
        gd.optimize(reg2, **args)


def test_bad_data_and_problems():
    with pytest.raises(ValueError, match="X is empty"):
        gd.LinearRegression(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match=r"y must be 1-D with one entry per row of X \(5\)"):
        gd.LinearRegression(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        gd.LinearRegression(np.full((3, 1), np.nan), np.zeros(3))
    with pytest.raises(ValueError, match="only 0 and 1"):
        gd.LogisticRegression(np.ones((3, 1)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="positive definite"):
        gd.Quadratic(np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="kappa"):
        gd.quadratic(0.5)
    with pytest.raises(ValueError, match=r"features must be one of .*got 'weight'"):
        gd.diabetes_regression(("bmi", "weight"))
    with pytest.raises(ValueError, match="idx must be None"):
        gd.quadratic(2.0).grad(np.zeros(2), idx=np.array([0]))
    with pytest.raises(TypeError, match="problem"):
        gd.optimize("diabetes", 0.1, steps=3)
    with pytest.raises(ValueError, match="warmup"):
        gd.LRSchedule("warmup")
    with pytest.raises(ValueError, match="gamma"):
        gd.LRSchedule("step", gamma=0.0)
    with pytest.raises(ValueError, match="lr_max must be > lr_min"):
        gd.lr_range_test(gd.quadratic(2.0), 1.0, 0.1)


# ------------------------------------------------------------ stability with batch size
def test_per_example_and_minibatch_curvature(reg):
    curv = gd.per_example_curvature(reg)
    X = reg.X
    i = int(np.argmax(curv))
    assert math.isclose(curv[i], np.linalg.eigvalsh(2 * np.outer(X[i], X[i]))[-1], rel_tol=1e-12)
    assert math.isclose(curv.mean(), np.trace(reg.hessian()), rel_tol=1e-12)  # mean of traces
    b1 = gd.minibatch_curvature(reg, 1, samples=500, seed=0)
    b64 = gd.minibatch_curvature(reg, 64, samples=500, seed=0)
    full = gd.minibatch_curvature(reg, reg.n_examples, samples=3, seed=0)
    np.testing.assert_allclose(full, reg.L, rtol=1e-10)
    assert np.median(b1) > np.median(b64) > reg.L * 0.99  # smaller batches: larger curvature
    assert set(np.round(b1, 8)) <= set(np.round(curv, 8))


def test_mean_square_limit_matches_a_one_dimensional_closed_form():
    # 1-D, B = 1: E[(1 - lr h)^2] = 1 - 2 lr E[h] + lr^2 E[h^2] < 1  <=>  lr < 2 E[h] / E[h^2]
    X = np.array([[1.0], [2.0], [0.5], [3.0]])
    p = gd.LinearRegression(X, np.zeros(4))
    h = 2 * X[:, 0] ** 2
    assert math.isclose(gd.sgd_stability_limit(p, 1, tol=1e-9), 2 * h.mean() / (h**2).mean(), rel_tol=1e-6)
    assert math.isclose(gd.mean_square_radius(p, 0.01, 1), 1 - 2 * 0.01 * h.mean() + 1e-4 * (h**2).mean(), rel_tol=1e-12)


def test_sgd_limit_shrinks_with_the_batch_and_predicts_divergence(reg):
    limits = [gd.sgd_stability_limit(reg, b) * reg.L / 2 for b in (1, 4, 32, 442)]
    assert limits == sorted(limits) and limits[0] < 0.35 and limits[-1] > 0.99
    # measured: B = 1 diverges (most seeds) at 1.5 x the predicted limit, converges at 0.5 x
    lrs = np.array([0.5, 1.5]) * gd.sgd_stability_limit(reg, 1)
    div = np.array([gd.optimize(reg, lrs, epochs=20, batch_size=1, seed=s, record_params=False).diverged
                    for s in range(4)])
    assert not div[:, 0].any() and div[:, 1].mean() >= 0.75


def test_momentum_matrix_rate_matches_polyak_and_the_runs():
    q = gd.quadratic(50.0, L=2.0)
    lr, beta, rate = gd.heavy_ball_optimum(q.L, q.mu)
    assert math.isclose(gd.momentum_rate(lr, beta, [q.mu, q.L]), rate, rel_tol=1e-6)  # double root
    for nesterov in (False, True):
        lam, lr, beta = 1.3, 0.4, 0.7
        A = gd.momentum_matrix(lr, beta, lam, nesterov)
        runs = gd.optimize(gd.Quadratic([[lam]]), lr, optimizer="nesterov" if nesterov else "momentum",
                           momentum=beta, steps=5, w0=[1.0])
        state = np.array([1.0, 0.0])
        for k in range(5):
            state = A @ state
            assert math.isclose(state[0], runs.params[k + 1, 0, 0], rel_tol=1e-12)


def test_finite_population_factor_and_the_full_batch_limit(reg):
    n = reg.n_examples
    assert gd.finite_population_factor(n, 1) == 1.0 and gd.finite_population_factor(n, n) == 0.0
    # the variance of a mean of B of n items drawn without replacement, by enumeration
    items = np.array([1.0, 4.0, 2.0, 7.0, 3.0])
    from itertools import combinations
    means = [np.mean(c) for c in combinations(items, 2)]
    assert math.isclose(np.var(means), np.var(items) * gd.finite_population_factor(5, 2), rel_tol=1e-12)
    assert math.isclose(gd.sgd_stability_limit(reg, n, tol=1e-7), 2 / reg.L, rel_tol=1e-6)  # B = n: GD's 2/L
    with pytest.raises(ValueError, match="batch_size"):
        gd.finite_population_factor(n, n + 1)


def test_lyapunov_exponent_matches_one_dimension_and_the_full_batch(reg):
    # 1-D, B = 1: the exponent is E log|1 - lr h| over the examples (a law-of-large-numbers check)
    X = np.array([[1.0], [2.0], [0.5], [3.0]])
    p = gd.LinearRegression(X, np.zeros(4))
    h = 2 * X[:, 0] ** 2
    lr = 0.1
    exact = np.mean(np.log(np.abs(1 - lr * h)))
    assert abs(gd.lyapunov_exponent(p, lr, 1, steps=20000, seed=0) - exact) < 0.02
    # B = n: deterministic GD from a start along every eigenvector: log max|1 - lr lam| in the limit
    lr = 1.5 / reg.L
    rate = np.log(np.max(np.abs(1 - lr * reg.eigenvalues)))
    assert abs(gd.lyapunov_exponent(reg, lr, reg.n_examples, steps=3000) - rate) < 0.01
    with pytest.raises(ValueError, match="lr"):
        gd.lyapunov_exponent(reg, -1.0, 1)


def test_heavy_ball_radius_matches_the_2x2_map_and_its_closed_forms():
    x = np.linspace(0.01, 4.5, 91)
    for beta in (0.0, 0.3, 0.81):
        rho = gd.heavy_ball_radius(x, beta)
        direct = [gd.momentum_rate(xi, beta, 1.0) for xi in x]  # eigenvalues of torch's buffer form
        assert np.allclose(rho, direct, rtol=1e-7, atol=1e-9)
        stable = x[rho < 1]
        assert stable.max() < 2 * (1 + beta) <= x[rho >= 1].min()
        band = (x > (1 - beta**0.5) ** 2) & (x < (1 + beta**0.5) ** 2)
        assert np.allclose(rho[band], beta**0.5)
    assert gd.heavy_ball_radius(np.array([[0.5]]), np.array([[0.2]])).shape == (1, 1)
    with pytest.raises(ValueError, match="momentum"):
        gd.heavy_ball_radius(1.0, 1.0)


def test_best_heavy_ball_step_recovers_gd_and_polyak():
    L, mu = 4.0, 0.25
    lr0, rate0 = gd.best_heavy_ball_step(0.0, mu, L)
    assert np.isclose(lr0, 2 / (L + mu), rtol=1e-9) and np.isclose(rate0, (L - mu) / (L + mu), rtol=1e-9)
    lr_p, beta_p, rate_p = gd.heavy_ball_optimum(L, mu)
    lr_b, rate_b = gd.best_heavy_ball_step(beta_p, mu, L)
    assert np.isclose(rate_b, rate_p, rtol=1e-6) and np.isclose(lr_b, lr_p, rtol=1e-6)
    betas = np.linspace(0, 0.95, 96)
    rates = [gd.best_heavy_ball_step(b, mu, L)[1] for b in betas]
    assert abs(betas[int(np.argmin(rates))] - beta_p) <= 0.01  # Polyak's beta is the best one
    assert np.isclose(gd.best_heavy_ball_step(0.9, mu, L)[1], 0.9**0.5)  # above beta*: sqrt(beta)
    with pytest.raises(ValueError, match="mu must be <= L"):
        gd.best_heavy_ball_step(0.5, 2.0, 1.0)
    with pytest.raises(ValueError, match="mu"):
        gd.best_heavy_ball_step(0.5, -1.0, 1.0)
