"""DinoBloom trainer losses (Sinkhorn-Knopp, DINO, iBOT, KoLeo) and schedules: hand-computed and property checks."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dinobloom_train.losses import DINOLoss, IBOTPatchLoss, KoLeoLoss, sinkhorn_knopp
from dinobloom_train.schedules import Schedules, cosine_schedule, scaled_lr

# ----------------------------------------------------------------------------------------------- Sinkhorn-Knopp

def _sinkhorn_reference(m, n_iterations):
    """Exact rational Sinkhorn-Knopp on a B x K matrix of exp(logits / temp) values (lists of Fractions)."""
    B, K = len(m), len(m[0])
    total = sum(sum(row) for row in m)
    q = [[v / total for v in row] for row in m]
    for _ in range(n_iterations):
        cols = [sum(q[b][k] for b in range(B)) for k in range(K)]
        q = [[q[b][k] / cols[k] / K for k in range(K)] for b in range(B)]
        rows = [sum(q[b]) for b in range(B)]
        q = [[q[b][k] / rows[b] / B for k in range(K)] for b in range(B)]
    return [[v * B for v in row] for row in q]


def test_sinkhorn_rows_sum_to_one_and_columns_converge_to_b_over_k():
    torch.manual_seed(0)
    B, K = 64, 16
    logits = 0.02 * torch.randn(B, K)
    q = sinkhorn_knopp(logits, teacher_temp=0.04)
    assert q.shape == (B, K) and q.dtype == torch.float32
    assert torch.all(q >= 0)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(B), atol=1e-5, rtol=0)
    # each prototype gets (nearly) equal mass B/K after 3 iterations on this well-conditioned case
    torch.testing.assert_close(q.sum(dim=0), torch.full((K,), B / K), atol=2e-3 * B / K, rtol=0)
    # more iterations -> closer to doubly stochastic
    err1 = (sinkhorn_knopp(logits, 0.04, n_iterations=1).sum(0) - B / K).abs().max()
    err3 = (q.sum(0) - B / K).abs().max()
    assert err3 < err1


def test_sinkhorn_2x2_by_hand():
    # exp(logits / 1) = [[1, 2], [3, 4]] (rows = samples, columns = prototypes), B = K = 2.
    # /10 -> [[.1, .2], [.3, .4]]; columns to 1/2: [[1/8, 1/6], [3/8, 1/3]];
    # rows to 1/2: row sums 7/24, 17/24 -> [[3/14, 2/7], [9/34, 4/17]]; times B = 2:
    logits = torch.log(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64))
    q1 = sinkhorn_knopp(logits, teacher_temp=1.0, n_iterations=1)
    expected1 = torch.tensor([[3 / 7, 4 / 7], [9 / 17, 8 / 17]], dtype=torch.float64)
    torch.testing.assert_close(q1, expected1, atol=1e-12, rtol=0)
    # second iteration continued by hand: columns to 1/2 -> [[17/76, 17/62], [21/76, 14/62]],
    # rows to 1/2 -> [[31/138, 38/138], [93/338, 76/338]]; times 2:
    q2 = sinkhorn_knopp(logits, teacher_temp=1.0, n_iterations=2)
    expected2 = torch.tensor([[31 / 69, 38 / 69], [93 / 169, 76 / 169]], dtype=torch.float64)
    torch.testing.assert_close(q2, expected2, atol=1e-12, rtol=0)
    # the default 3 iterations against an exact rational computation
    exact = _sinkhorn_reference([[Fraction(1), Fraction(2)], [Fraction(3), Fraction(4)]], 3)
    q3 = sinkhorn_knopp(logits, teacher_temp=1.0)
    torch.testing.assert_close(q3, torch.tensor([[float(v) for v in row] for row in exact], dtype=torch.float64),
                               atol=1e-12, rtol=0)
    # temperature divides the logits: temp 0.5 on logits/2 is the same problem
    torch.testing.assert_close(sinkhorn_knopp(logits / 2, teacher_temp=0.5), q3, atol=1e-12, rtol=0)


def test_sinkhorn_special_cases_by_hand():
    # symmetric 2x2 [[a, b], [b, a]]: columns already balanced, so Q = row-wise softmax
    a, b = 0.3, -0.2
    logits = torch.tensor([[a, b], [b, a]], dtype=torch.float64)
    q = sinkhorn_knopp(logits, teacher_temp=0.1)
    p = math.exp(a / 0.1) / (math.exp(a / 0.1) + math.exp(b / 0.1))
    torch.testing.assert_close(q, torch.tensor([[p, 1 - p], [1 - p, p]], dtype=torch.float64))
    # rank-one exp (logits = row offset + column offset): one iteration gives the uniform assignment 1/K
    rows, cols = torch.randn(5, 1, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)
    q = sinkhorn_knopp(rows + cols, teacher_temp=0.5, n_iterations=1)
    torch.testing.assert_close(q, torch.full((5, 4), 0.25, dtype=torch.float64))


def test_sinkhorn_invariant_to_constant_and_stable_at_low_temperature():
    torch.manual_seed(1)
    logits = torch.randn(8, 6)
    q = sinkhorn_knopp(logits, 0.07)
    torch.testing.assert_close(sinkhorn_knopp(logits + 3.0, 0.07), q)
    torch.testing.assert_close(sinkhorn_knopp(logits - 50.0, 0.07), q)
    # exp(10 / 0.04) overflows float32 without the shift
    big = sinkhorn_knopp(logits + 10.0, 0.04)
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big, sinkhorn_knopp(logits, 0.04))
    # half precision input is computed in float32
    assert sinkhorn_knopp(logits.half(), 0.07).dtype == torch.float32


def test_sinkhorn_has_no_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    q = sinkhorn_knopp(logits, 0.04)
    assert not q.requires_grad and q.grad_fn is None


def _sinkhorn_rank(rank, world_size, init_file, logits, sizes, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        start = sum(sizes[:rank])
        q = sinkhorn_knopp(logits[start:start + sizes[rank]], 0.05)
        torch.save(q, f"{out_dir}/q{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_sinkhorn_distributed_matches_single_process(tmp_path):
    """Two gloo ranks with uneven shares (as masked-patch counts are) give the rows of the global solution."""
    import torch.multiprocessing as mp

    torch.manual_seed(2)
    logits = torch.randn(8, 5)
    sizes = [5, 3]
    mp.spawn(_sinkhorn_rank, args=(2, str(tmp_path / "pg"), logits, sizes, str(tmp_path)), nprocs=2, join=True)
    q = torch.cat([torch.load(tmp_path / f"q{r}.pt") for r in range(2)])
    full = sinkhorn_knopp(logits, 0.05)
    torch.testing.assert_close(q, full, atol=1e-6, rtol=1e-5)
    # and it is not what each rank would get on its own share
    assert not torch.allclose(q[:5], sinkhorn_knopp(logits[:5], 0.05), atol=1e-4)


# ----------------------------------------------------------------------------------------------- DINO loss

def _ce_loop(t_row, s_row, temp):
    """-sum_k t_k log softmax(s / temp)_k with explicit loops."""
    z = [v / temp for v in s_row]
    m = max(z)
    log_norm = m + math.log(sum(math.exp(v - m) for v in z))
    return -sum(tk * (zk - log_norm) for tk, zk in zip(t_row, z))


def test_dino_loss_equals_explicit_loops_over_cross_crop_pairs():
    torch.manual_seed(3)
    B, K, temp = 3, 4, 0.1
    s = [torch.randn(B, K, dtype=torch.float64) for _ in range(2)]
    teacher_logits = torch.randn(2 * B, K, dtype=torch.float64)
    t = sinkhorn_knopp(teacher_logits, 0.04).chunk(2)
    loss = DINOLoss(K, student_temp=temp)(s, list(t))

    terms = []
    for i in range(2):
        for j in range(2):
            if i == j:
                continue
            terms.append(sum(_ce_loop(t[j][b].tolist(), s[i][b].tolist(), temp) for b in range(B)) / B)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-12)
    # = (CE(s0, t1) + CE(s1, t0)) / 2: the same-crop pairs are not used
    ce = lambda a, b: -(b * F.log_softmax(a / temp, dim=-1)).sum(-1).mean()  # noqa: E731
    assert loss.item() == pytest.approx(((ce(s[0], t[1]) + ce(s[1], t[0])) / 2).item(), rel=1e-12)


def test_dino_loss_tiny_hand_case():
    # one sample, two prototypes, student_temp 1: s0 = [0, 0] -> log softmax = [-log 2, -log 2];
    # s1 = [log 3, 0] -> softmax [3/4, 1/4]. Teacher t0 = [1, 0], t1 = [1/2, 1/2].
    s0 = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    s1 = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    t0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t1 = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    loss = DINOLoss(2, student_temp=1.0)([s0, s1], [t0, t1])
    # pair (s0, t1): log 2; pair (s1, t0): -log(3/4)
    assert loss.item() == pytest.approx((math.log(2.0) - math.log(0.75)) / 2, rel=1e-12)


def test_dino_loss_counts_local_crop_pairs_like_dinov2():
    torch.manual_seed(4)
    B, K = 2, 5
    s = [torch.randn(B, K) for _ in range(3)]  # 2 global + 1 local student crop
    t = [torch.softmax(torch.randn(B, K), -1) for _ in range(2)]
    ce = lambda a, b: -(b * F.log_softmax(a / 0.1, dim=-1)).sum(-1).mean()  # noqa: E731
    expected = (ce(s[0], t[1]) + ce(s[1], t[0]) + ce(s[2], t[0]) + ce(s[2], t[1])) / 4
    torch.testing.assert_close(DINOLoss(K)(s, t), expected)
    with pytest.raises(ValueError):
        DINOLoss(K)([s[0]], [t[0]])  # no pair with i != j


def test_dino_loss_gradient_reaches_student_only():
    torch.manual_seed(5)
    B, K = 4, 8
    student = torch.randn(2 * B, K, requires_grad=True)
    teacher_logits = torch.randn(2 * B, K, requires_grad=True)
    teacher_soft = torch.softmax(teacher_logits, -1)  # even targets that carry a graph are detached
    t_sk = sinkhorn_knopp(teacher_logits, 0.04)
    assert not t_sk.requires_grad
    loss = DINOLoss(K)(list(student.chunk(2)), list(teacher_soft.chunk(2)))
    loss.backward()
    assert teacher_logits.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0
    # d/ds of CE(softmax(s / T), t) summed over classes is zero (softmax - t sums to 0 per row)
    torch.testing.assert_close(student.grad.sum(-1), torch.zeros(2 * B), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------- iBOT loss

def _ibot_masks():
    # 3 images, 4 patches; image 2 has no masked patch (mask probability 0.5 in DINOv2)
    return torch.tensor([[1, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)


def test_ibot_loss_equals_explicit_loop_and_ignores_unmasked_patches():
    torch.manual_seed(6)
    N, P, K, temp = 3, 4, 5, 0.1
    masks = _ibot_masks()
    student = torch.randn(N, P, K, dtype=torch.float64)
    teacher_logits = torch.randn(N, P, K, dtype=torch.float64)
    loss_fn = IBOTPatchLoss(K, student_temp=temp)
    t = loss_fn.sinkhorn_knopp_teacher(teacher_logits[masks], teacher_temp=0.05)
    assert t.shape == (int(masks.sum()), K)
    torch.testing.assert_close(t, sinkhorn_knopp(teacher_logits[masks], 0.05))
    loss = loss_fn(student, t, masks)

    # explicit loop: mean over each image's masked patches, then mean over all N images (empty image -> 0)
    total, row = 0.0, 0
    for n in range(N):
        idx = [p for p in range(P) if masks[n, p]]
        per_image = 0.0
        for p in idx:
            per_image += _ce_loop(t[row].tolist(), student[n, p].tolist(), temp)
            row += 1
        total += per_image / max(len(idx), 1)
    assert loss.item() == pytest.approx(total / N, rel=1e-12)

    # unmasked student logits do not matter; a masked one does
    changed = student.clone()
    changed[~masks] = 100.0 * torch.randn(int((~masks).sum()), K, dtype=torch.float64)
    assert loss_fn(changed, t, masks).item() == pytest.approx(loss.item(), rel=1e-12)
    changed[0, 0, 0] += 1.0  # one logit (a shift of all K would not change log_softmax)
    assert loss_fn(changed, t, masks).item() != pytest.approx(loss.item(), rel=1e-6)
    # forward_masked on the pre-selected rows is the same thing
    torch.testing.assert_close(loss_fn.forward_masked(student[masks], t, masks), loss)


def test_ibot_loss_gradient_only_on_masked_patches():
    torch.manual_seed(7)
    masks = _ibot_masks()
    student = torch.randn(3, 4, 6, requires_grad=True)
    t = sinkhorn_knopp(torch.randn(int(masks.sum()), 6), 0.04)
    IBOTPatchLoss(6)(student, t, masks).backward()
    assert student.grad[~masks].abs().max() == 0
    assert (student.grad[masks].abs().sum(-1) > 0).all()
    # no masked patch anywhere: zero loss, still differentiable
    none = torch.zeros(3, 4, dtype=torch.bool)
    loss = IBOTPatchLoss(6)(student, torch.zeros(0, 6), none)
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError):
        IBOTPatchLoss(6)(student, t[:-1], masks)


# ----------------------------------------------------------------------------------------------- KoLeo

def test_koleo_by_hand():
    # normalised: a = (1, 0), b = (1, 1)/sqrt2, c = (0, -1)
    x = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
    # |a-b| = sqrt(2 - sqrt2), |a-c| = sqrt2, |b-c| = sqrt(2 + sqrt2): NN(a)=b, NN(b)=a, NN(c)=a
    d_ab, d_ac = math.sqrt(2 - math.sqrt(2)), math.sqrt(2)
    expected = -(2 * math.log(d_ab) + math.log(d_ac)) / 3
    loss = KoLeoLoss()(x)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # three points on one line after normalisation: (1, 0), (1, 0) again, (-1, 0).
    # DINOv2's PairwiseDistance adds eps to the difference: d = ||x - y + eps||, then log(d + eps).
    eps = 1e-8
    y = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-5.0, 0.0]], dtype=torch.float64)
    d_dup = math.sqrt(2) * eps  # the two copies are each other's neighbour
    d_far = math.hypot(-2 + eps, eps)  # the third point's neighbour is 2 away
    expected_y = -(2 * math.log(d_dup + eps) + math.log(d_far + eps)) / 3
    assert KoLeoLoss()(y).item() == pytest.approx(expected_y, rel=1e-9)  # ~11.5: duplicates are penalised
    # (1,0), (0,1), (-1,0): every nearest-neighbour distance is sqrt2
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    assert KoLeoLoss()(z).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-6)


def test_koleo_invariances_and_antipodal_pair():
    torch.manual_seed(8)
    x = torch.randn(10, 16)
    loss = KoLeoLoss()(x)
    perm = torch.randperm(10)
    torch.testing.assert_close(KoLeoLoss()(x[perm]), loss)
    scales = torch.rand(10, 1) * 5 + 0.1
    torch.testing.assert_close(KoLeoLoss()(x * scales), loss, atol=1e-5, rtol=1e-5)
    # two antipodal points: each one's neighbour is the other (distance 2), never itself
    pair = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert KoLeoLoss()(pair).item() == pytest.approx(-math.log(2.0), abs=1e-6)
    # gradient flows to the features
    xg = x.clone().requires_grad_(True)
    KoLeoLoss()(xg).backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        KoLeoLoss()(x[:1])


# ----------------------------------------------------------------------------------------------- schedules

def test_cosine_schedule_freeze_warmup_cosine():
    s = cosine_schedule(1.0, 0.1, total_iters=20, warmup_iters=5, start_warmup=0.5, freeze_iters=3)
    assert s.shape == (20,)
    assert np.all(s[:3] == 0.0)
    np.testing.assert_allclose(s[3:8], np.linspace(0.5, 1.0, 5))
    assert s[3] == 0.5 and s[7] == 1.0  # warm-up ends exactly at base
    n = 12
    assert s[8] == pytest.approx(1.0)  # cosine starts at base
    assert s[8 + n // 2] == pytest.approx(0.55)  # half-way: (base + final) / 2
    assert s[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * (n - 1) / n)))
    assert np.all(np.diff(s[8:]) < 0)
    # no warm-up, no freeze: pure cosine from base toward final
    c = cosine_schedule(0.994, 1.0, 100)
    assert c[0] == pytest.approx(0.994) and c[-1] == pytest.approx(1.0, abs=1e-5) and np.all(np.diff(c) > 0)
    # warm-up only (DINOv2's teacher-temperature use)
    np.testing.assert_allclose(cosine_schedule(0.07, 0.07, 4, warmup_iters=4, start_warmup=0.04),
                               [0.04, 0.05, 0.06, 0.07])
    with pytest.raises(ValueError):
        cosine_schedule(1.0, 0.0, 10, warmup_iters=8, freeze_iters=3)


def test_scaled_lr_paper_batches():
    assert scaled_lr(2e-4, 1024) == pytest.approx(2e-4)
    for batch, expected in [(1216, 2.17945e-4), (960, 1.93649e-4), (448, 1.32288e-4), (208, 9.01388e-5)]:
        assert scaled_lr(2e-4, batch) == pytest.approx(2e-4 * math.sqrt(batch / 1024))
        assert scaled_lr(2e-4, batch) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError):
        scaled_lr(2e-4, 0)


def test_schedules_defaults_and_values():
    ipe = 10
    s = Schedules(total_iters=500, global_batch=208, iters_per_epoch=ipe)
    peak = 2e-4 * math.sqrt(208 / 1024)
    assert s.peak_lr == pytest.approx(peak)
    for arr in (s.lr, s.last_layer_lr, s.wd, s.momentum, s.teacher_temp_schedule):
        assert arr.shape == (500,)
    # lr: warm-up 10 epochs from 0 to peak, cosine to 1e-6
    assert s.warmup_iters == 100
    assert s.lr[0] == 0.0 and s.lr[99] == pytest.approx(peak) and s.lr[100] == pytest.approx(peak)
    assert s.lr[-1] == pytest.approx(1e-6, abs=1e-7) and s.lr[-1] > 1e-6
    # last layer: zero during the first epoch, then exactly lr
    assert np.all(s.last_layer_lr[:ipe] == 0.0)
    np.testing.assert_array_equal(s.last_layer_lr[ipe:], s.lr[ipe:])
    # weight decay 0.04 -> 0.2, momentum 0.994 -> 1 (cosine, no warm-up)
    assert s.wd[0] == pytest.approx(0.04) and s.wd[-1] == pytest.approx(0.2, abs=1e-5)
    assert s.momentum[0] == pytest.approx(0.994) and s.momentum[-1] == pytest.approx(1.0, abs=1e-6)
    assert s.wd[250] == pytest.approx(0.12) and s.momentum[250] == pytest.approx(0.997)
    # teacher temperature: linear 0.04 -> 0.07 over 30 epochs, then constant
    assert s.warmup_teacher_temp_iters == 300
    tt = s.teacher_temp_schedule
    assert tt[0] == pytest.approx(0.04) and tt[299] == pytest.approx(0.07)
    np.testing.assert_allclose(tt[:300], np.linspace(0.04, 0.07, 300))
    assert np.all(tt[300:] == 0.07)
    # at(): values, and the final values past the end
    assert s.at(0) == {"lr": 0.0, "last_layer_lr": 0.0, "wd": pytest.approx(0.04), "momentum": pytest.approx(0.994),
                       "teacher_temp": pytest.approx(0.04)}
    assert s.at(10_000) == {"lr": 1e-6, "last_layer_lr": 1e-6, "wd": 0.2, "momentum": 1.0, "teacher_temp": 0.07}


def test_schedules_overrides_and_short_runs():
    s = Schedules(total_iters=50, global_batch=1216, iters_per_epoch=500, warmup_iters=5, freeze_last_layer_iters=3,
                  warmup_teacher_temp_iters=200, lr_override=1e-3, min_lr=0.0, weight_decay=0.1,
                  weight_decay_end=0.1, momentum_teacher=0.99, warmup_teacher_temp=0.03, teacher_temp=0.05)
    assert s.lr[4] == pytest.approx(1e-3) and s.lr[0] == 0.0
    assert np.all(s.last_layer_lr[:3] == 0) and s.last_layer_lr[3] == s.lr[3] > 0
    np.testing.assert_allclose(s.wd, 0.1)
    assert s.momentum[0] == pytest.approx(0.99)
    # teacher-temperature warm-up longer than the run: the ramp is truncated, not compressed
    np.testing.assert_allclose(s.teacher_temp_schedule, np.linspace(0.03, 0.05, 200)[:50])
    # default lr warm-up (10 epochs of 500) cannot fit 1000 iterations
    with pytest.raises(ValueError, match="warm-up"):
        Schedules(total_iters=1000, global_batch=960)
    assert Schedules(total_iters=8000, global_batch=960).peak_lr == pytest.approx(scaled_lr(2e-4, 960))
