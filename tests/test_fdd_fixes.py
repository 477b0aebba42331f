"""The FDD fixes the review found (issue 9), each kept as a config field: D_e without the known frame 0, the SDS
timestep range up to 1.0, both generator hinge forms, the LoRA EMA, per-teacher SDS t-ranges, the SDS noise
control, and DiffAugment's parts. The EMA's checkpoint and resume tests are in test_train.py."""

from dataclasses import replace

import pytest
import torch

import eve.train.fdd as fdd_module
from eve.config import FddConfig, load_config
from eve.errors import EveError
from eve.losses import hinge_g_loss, rms_matched_noise
from eve.train.augment import Augment, diff_augment
from eve.train.ema import Ema
from eve.train.fdd import Batch, FddGenerator, disc_frame_choice, sds_timesteps, t_range
from eve.train.checks import validate

T = 1000


# ------------------------------------------------------------------ tiny-model objective


def tiny_batch(model, B: int = 1, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    F, H = 4, 16
    cap, ins = ["a red square on grey"] * B, ["make the square blue"] * B
    return Batch(frames=torch.rand(B, F, 3, H, H, generator=g) * 2 - 1, caption=model.encode_text(cap),
                 instruction=model.encode_text(ins), caption_pooled=model.text.pooled(cap).float(),
                 instruction_pooled=model.text.pooled(ins).float(), task=torch.zeros(B, dtype=torch.long),
                 f1=torch.rand(B, model.latent_channels, H, H, generator=g) * 2 - 1)


@pytest.fixture
def student(model):
    model.add_lora(4, None, ["to_q", "to_k", "to_v", "to_out.0"])
    return model


def sds_step(model, fdd: FddConfig, seed: int = 0, B: int = 1) -> dict:
    return FddGenerator(model, fdd, None, torch.Generator().manual_seed(seed))(tiny_batch(model, B), adversarial=False)


# ------------------------------------------------------------------ 1. D_e never sees frame 0


def test_d_e_frames_never_include_the_known_frame_0():
    g = torch.Generator().manual_seed(0)
    assert disc_frame_choice(8, None, False, g) == list(range(1, 8)), "all-frames mode: frames 1..F-1"
    assert disc_frame_choice(8, 7, False, g) == disc_frame_choice(8, 12, False, g) == list(range(1, 8))
    seen = set()
    for n in (1, 3, 6):
        for _ in range(300):
            chosen = disc_frame_choice(8, n, False, g)
            assert len(chosen) == n == len(set(chosen)) and 0 not in chosen
            seen |= set(chosen)
    assert seen == set(range(1, 8)), "every generated frame gets drawn"
    # the opt-in keeps the old behaviour: frame 0 allowed
    assert disc_frame_choice(8, None, True, g) == list(range(8))
    assert any(0 in disc_frame_choice(8, 2, True, g) for _ in range(200))


def test_both_turns_take_d_e_frames_from_the_generator_default_config():
    """The loop asks FddGenerator.disc_frames in the generator and the critic turn; by default frame 0 is out."""
    gen = FddGenerator(torch.nn.Identity(), FddConfig(disc_frames=2), None, torch.Generator().manual_seed(1))
    draws = [gen.disc_frames(4) for _ in range(200)]
    assert all(0 not in d and len(d) == 2 for d in draws)
    assert FddGenerator(torch.nn.Identity(), FddConfig(), None, torch.Generator()).disc_frames(4) == [1, 2, 3]


# ------------------------------------------------------------------ 2. SDS t range up to 1.0


def test_sds_t_draw_stays_in_0_to_T_minus_1_for_max_1():
    assert t_range(T, 0.02, 1.0) == (20, T - 1)
    assert t_range(T, 0.02, 0.98) == (20, 980)
    t, same = sds_timesteps(20000, T, FddConfig(sds_t_max=1.0), torch.Generator().manual_seed(0))
    assert same is t and int(t.min()) >= 20 and int(t.max()) == T - 1


def test_default_shared_draw_is_the_old_draw():
    """No per-teacher range: the same generator draws as before the fixes, so existing runs are bit-identical."""
    t, _ = sds_timesteps(64, T, FddConfig(), torch.Generator().manual_seed(3))
    old = torch.randint(int(0.02 * T), int(0.98 * T) + 1, (64,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(t, old)


def test_objective_runs_at_t_max_1(student):
    fdd = FddConfig(sds_t_min=0.999, sds_t_max=1.0)  # the old draw gave t = T here half of the time
    for seed in range(4):
        res = sds_step(student, fdd, seed=seed, B=2)
        assert res["logs"]["t_sds"] == T - 1 and torch.isfinite(res["loss"])
        res["loss"].backward()


# ------------------------------------------------------------------ 3. generator hinge forms


def test_generator_forms_gradient_where_d_is_sure_of_fake():
    logits = torch.linspace(-6, 3, 19, requires_grad=True)
    hinge_g_loss(logits, "paper_clipped").backward()
    below = logits.detach() < -1
    assert torch.all(logits.grad[below] == 0), "paper_clipped: no gradient below the clip point"
    assert torch.all(logits.grad[~below & (logits.detach() > -1)] < 0)
    logits.grad = None
    hinge_g_loss(logits, "add_linear").backward()
    torch.testing.assert_close(logits.grad, torch.full_like(logits, -1 / len(logits)))  # nonzero everywhere


# ------------------------------------------------------------------ 4. EMA of the LoRA


def test_ema_follows_the_recursion_and_swaps_back():
    p = [torch.nn.Parameter(torch.tensor([1.0, -2.0])), torch.nn.Parameter(torch.tensor([[0.5]]))]
    d = 0.9
    ema = Ema(p, d)
    hand = [q.detach().clone().double() for q in p]
    for step in range(1, 5):
        with torch.no_grad():
            p[0].add_(step)
            p[1].mul_(-2)
        ema.update()
        hand = [d * h + (1 - d) * q.detach().double() for h, q in zip(hand, p)]
    for s, h in zip(ema.shadow, hand):
        torch.testing.assert_close(s.double(), h)
    trained = [q.detach().clone() for q in p]
    with ema.applied():
        assert all(torch.equal(q, s) for q, s in zip(p, ema.shadow))
    assert all(torch.equal(q, t) for q, t in zip(p, trained)), "trained values are back after the block"
    with pytest.raises(ValueError):
        Ema(p, 1.0)


# ------------------------------------------------------------------ 5. per-teacher SDS t ranges


def record_teacher_t(monkeypatch, model) -> dict:
    seen = {"edit": [], "video": []}
    original = model.guided_x0

    def recording(xt, t, cond, role, **kw):
        seen["edit" if role == fdd_module.Role.EDIT_TEACHER else "video"].append(t.clone())
        return original(xt, t, cond, role, **kw)

    monkeypatch.setattr(model, "guided_x0", recording)
    return seen


def test_per_teacher_ranges_give_each_teacher_its_own_t(student, monkeypatch):
    seen = record_teacher_t(monkeypatch, student)
    fdd = FddConfig(edit_sds_t_range=[0.1, 0.2], video_sds_t_range=[0.7, 0.8])
    for seed in range(3):
        logs = sds_step(student, fdd, seed=seed, B=2)["logs"]
        assert 100 <= logs["t_sds_edit"] <= 200 and 700 <= logs["t_sds_video"] <= 800
    edit, video = torch.cat(seen["edit"]), torch.cat(seen["video"])
    assert edit.min() >= 100 and edit.max() <= 200 and video.min() >= 700 and video.max() <= 800
    # one override only: the other teacher keeps the shared range, in a separate draw
    t_e, t_v = sds_timesteps(4000, T, FddConfig(video_sds_t_range=[0.9, 1.0]), torch.Generator().manual_seed(0))
    assert t_e.min() >= 20 and t_e.max() <= 980 and t_v.min() >= 900 and t_v.max() == T - 1


def test_without_overrides_both_teachers_share_t(student, monkeypatch):
    seen = record_teacher_t(monkeypatch, student)
    sds_step(student, FddConfig(), B=2)
    assert all(torch.equal(e, seen["video"][0]) for e in seen["edit"])


# ------------------------------------------------------------------ 6. SDS noise control


def x0_gradient(model, fdd: FddConfig, monkeypatch) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """(d loss / d x0 scaled to the SDS signal's units, the free-frame mask, the true SDS signals [edit, video])."""
    made, signals = [], []
    generate, loss = fdd_module.student_generate, fdd_module.sds_loss

    def leaf_generate(*a, **kw):
        made.append(generate(*a, **kw).detach().requires_grad_(True))
        return made[-1]

    def recording_loss(*a, **kw):
        out = loss(*a, **kw)
        signals.append(out[1])
        return out

    monkeypatch.setattr(fdd_module, "student_generate", leaf_generate)
    monkeypatch.setattr(fdd_module, "sds_loss", recording_loss)
    sds_step(model, fdd, seed=0)["loss"].backward()
    x0 = made[0]
    free = torch.ones(x0.shape[1], dtype=x0.dtype)
    free[0] = 0
    return x0.grad * x0.numel() / fdd.lam, free.view(1, -1, 1, 1, 1).expand_as(x0), signals


def rms_over(x, keep):
    return float(x.pow(2).sum().div(keep.sum()).sqrt())


@pytest.mark.parametrize("teacher", [0, 1], ids=["edit", "video"])
def test_noise_control_keeps_the_rms_and_loses_the_direction(student, monkeypatch, teacher):
    weights = dict(alpha=1.0, beta=0.0) if teacher == 0 else dict(alpha=0.0, beta=1.0)
    off, keep, true = x0_gradient(student, FddConfig(**weights), monkeypatch)
    torch.testing.assert_close(off, true[teacher], atol=1e-6, rtol=1e-5)  # off: the SDS gradient itself
    on, _, true_again = x0_gradient(student, FddConfig(sds_noise_control=True, **weights), monkeypatch)
    g = true_again[-2 + teacher]
    torch.testing.assert_close(g, true[teacher])  # the same draws up to the SDS gradient
    assert rms_over(g, keep) > 0
    assert rms_over(on, keep) == pytest.approx(rms_over(g, keep), rel=1e-4)
    cosine = float((on * g).sum() / (on.norm() * g.norm()))
    assert abs(cosine) < 0.1, f"the control's gradient should be uncorrelated with SDS, cosine {cosine:.3f}"
    assert torch.all(on[:, 0] == 0), "the known frame 0 still gets no gradient"


def test_rms_matched_noise_has_the_rms_over_kept_elements():
    g = torch.randn(2, 4, 3, 8, 8) * 3
    mask = torch.tensor([0.0, 1, 1, 1]).view(1, 4, 1, 1, 1)
    g = g * mask
    n = rms_matched_noise(g, mask, torch.Generator().manual_seed(0))
    keep = mask.expand_as(g)
    assert rms_over(n, keep) == pytest.approx(rms_over(g, keep), rel=1e-5) and torch.all(n[:, 0] == 0)


# ------------------------------------------------------------------ 7. DiffAugment's parts


def test_all_parts_off_is_the_identity():
    x = torch.rand(3, 2, 3, 16, 16) * 2 - 1
    assert torch.equal(diff_augment(x, torch.Generator(), colour=False, translate=0, cutout=0), x)


def test_without_colour_pixels_keep_their_colour_except_where_cut_or_shifted_in():
    g = torch.Generator().manual_seed(0)
    colour = torch.tensor([0.3, -0.6, 0.9]).view(1, 1, 3, 1, 1)
    flat = colour.expand(16, 2, 3, 20, 20).clone()
    y = Augment(colour=False, translate=0.25, cutout=0.09)(flat, g)
    kept = (y != 0).all(dim=2, keepdim=True)
    assert torch.all((y == colour) | ~kept) and torch.all((y == 0) | kept), "each pixel is its colour or zero"
    assert kept.float().mean() < 0.95, "translation and cutout did remove something"
    x = torch.rand(16, 2, 3, 20, 20) * 2 - 1
    y = Augment(colour=False, translate=0.25, cutout=0.09)(x, g)
    assert torch.isin(y[y != 0], x).all(), "whole-pixel shifts: no resampled (blurred) values"
    y = Augment(colour=True, translate=0, cutout=0)(flat, g)
    assert not torch.isclose(y, colour.expand_as(y)).all(), "colour on does change colours"


@pytest.mark.parametrize("fraction", [0.25, 0.09, 0.16])
def test_cutout_area_matches_the_fraction(fraction):
    x = torch.ones(32, 2, 3, 20, 20, requires_grad=True)
    y = diff_augment(x, torch.Generator().manual_seed(1), colour=False, translate=0, cutout=fraction)
    cut = (y == 0).all(dim=2)  # [N, G, H, W]
    assert torch.all(cut.float().mean(dim=(2, 3)) == fraction)
    assert torch.equal(cut[:, 0], cut[:, 1]), "one cut per group"
    y.sum().backward()
    assert x.grad.sum() > 0
    assert not (diff_augment(x, torch.Generator(), colour=False, translate=0, cutout=0) == 0).any()


# ------------------------------------------------------------------ bad values


def base_overrides():
    return ["data.manifest=m.csv", "model.pretrained=x", "model.controlnet=x", "model.motion_adapter=x", "model.dino=x"]


@pytest.mark.parametrize("override,message", [
    ("fdd.ema_decay=1.0", "fdd.ema_decay must be in [0, 1) (0 = off), got 1.0"),
    ("fdd.edit_sds_t_range=[0.5,0.2]",
     "fdd.edit_sds_t_range must be null or [min, max] with 0 <= min < max <= 1, got [0.5, 0.2]"),
    ("fdd.video_sds_t_range=[0.1]", "fdd.video_sds_t_range must be null or [min, max]"),
    ("disc.cutout_fraction=1.0", "disc.cutout_fraction must be in [0, 1), got 1.0"),
    ("disc.translate_fraction=0.7", "disc.translate_fraction must be in [0, 0.5], got 0.7"),
])
def test_bad_values_are_one_line_errors(override, message):
    cfg = load_config(None, base_overrides() + [override])
    with pytest.raises(EveError) as e:
        validate(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_single_frame_clips_need_d_e_on_frame_0():
    cfg = load_config(None, base_overrides() + ["model.num_frames=1"])
    with pytest.raises(EveError, match="fdd.disc_first_frame=true"):
        validate(cfg)
    validate(replace(cfg, fdd=replace(cfg.fdd, disc_first_frame=True)))


def test_new_fields_default_to_the_old_behaviour():
    f, d = FddConfig(), load_config(None, base_overrides()).disc
    assert (f.ema_decay, f.sds_noise_control, f.edit_sds_t_range, f.video_sds_t_range) == (0.0, False, None, None)
    assert (d.augment_colour, d.translate_fraction, d.cutout_fraction) == (True, 0.125, 0.25)
    assert f.gen_loss == "paper_clipped" and not f.disc_first_frame


# ------------------------------------------------------------------ 8. distribution matching (fdd.score=dmd)

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


@pytest.fixture
def dmd_student(student):
    from eve.models.lora import FAKE_EDIT, FAKE_VIDEO

    for adapter in FAKE_EDIT, FAKE_VIDEO:
        student.add_lora(4, None, LORA_TARGETS, adapter=adapter)
    return student


@pytest.mark.parametrize("teacher", [0, 1], ids=["edit", "video"])
def test_an_untrained_fake_score_is_the_unguided_teacher(dmd_student, monkeypatch, teacher):
    """A zero-initialised fake score predicts what its teacher predicts unguided, so with the same draws the DMD
    signal is the guided SDS signal minus the unguided one; with guidance 1 it vanishes."""
    weights = dict(alpha=1.0, beta=0.0) if teacher == 0 else dict(alpha=0.0, beta=1.0)
    guided = dict(edit_guidance=3.0, edit_image_guidance=2.0, video_guidance=3.0)
    one = dict(edit_guidance=1.0, edit_image_guidance=1.0, video_guidance=1.0)
    _, _, sds_guided = x0_gradient(dmd_student, FddConfig(**guided, **weights), monkeypatch)
    _, _, sds_one = x0_gradient(dmd_student, FddConfig(**one, **weights), monkeypatch)
    grad, _, dmd = x0_gradient(dmd_student, FddConfig(score="dmd", **guided, **weights), monkeypatch)
    n = len(dmd)
    torch.testing.assert_close(dmd[n - 2 + teacher], sds_guided[teacher] - sds_one[n - 2 + teacher],
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad, dmd[n - 2 + teacher], atol=1e-6, rtol=1e-5)  # the gradient the student gets
    assert float(dmd[n - 2 + teacher].abs().max()) > 1e-4
    _, _, none = x0_gradient(dmd_student, FddConfig(score="dmd", **one, **weights), monkeypatch)
    assert float(none[len(none) - 2 + teacher].abs().max()) < 1e-5


def test_the_fake_turn_trains_only_the_fake_scores_and_lowers_their_loss(dmd_student):
    from eve.models.lora import FAKE_EDIT, FAKE_VIDEO, lora_parameters
    from eve.train.fdd import FakeScoreStep

    m = dmd_student
    fdd = FddConfig(score="dmd")
    gen = torch.Generator()
    b = tiny_batch(m)
    x0 = torch.randn(1, 4, m.latent_channels, 16, 16, generator=torch.Generator().manual_seed(3))
    known = FddGenerator(m, fdd, None, gen).known(b, torch.zeros_like(x0))
    fake = [p for a in (FAKE_EDIT, FAKE_VIDEO) for p in lora_parameters(m.unet, a)]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.Adam(fake, lr=3e-2)
    step, losses = FakeScoreStep(m, fdd, gen), []
    for _ in range(25):
        gen.manual_seed(0)  # the same (t, eps) every time: the losses compare
        res = step(x0, b, known)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        losses.append(float(res["loss"].detach()))
        assert {"fake_edit", "fake_video"} <= res["logs"].keys()
    assert losses[-1] < 0.85 * losses[0] and losses[-1] == min(losses), losses
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(FAKE_EDIT in k or FAKE_VIDEO in k for k in changed), sorted(changed)[:5]


def test_fake_scores_are_off_in_every_other_role(dmd_student):
    from eve.models.composed import ROLE_SWITCHES, Cond, Role, fake_switches
    from eve.models.lora import FAKE_EDIT, FAKE_VIDEO, lora_parameters

    m = dmd_student
    b = tiny_batch(m)
    x = torch.randn(1, 4, m.latent_channels, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500])
    cond = Cond(b.caption, b.instruction, b.frames, b.task)
    calls = {role: (lambda role=role: m(x, t, cond, role)) for role in ROLE_SWITCHES if role != Role.LORA_TEACHER}
    calls["fake edit"] = lambda: m(x, t, cond, Role.EDIT_TEACHER, fake_switches(Role.EDIT_TEACHER, FAKE_EDIT))
    calls["fake video"] = lambda: m(x, t, cond, Role.VIDEO_TEACHER, fake_switches(Role.VIDEO_TEACHER, FAKE_VIDEO))
    with torch.no_grad():
        for p in lora_parameters(m.unet):  # a trained student: it must not leak into the fake scores' calls
            p.add_(torch.randn_like(p) * 0.5)
        before = {k: f() for k, f in calls.items()}
    # untrained (B = 0), a fake score is exactly its teacher
    assert torch.equal(before["fake edit"], before[Role.EDIT_TEACHER])
    assert torch.equal(before["fake video"], before[Role.VIDEO_TEACHER])
    with torch.no_grad():
        for a in FAKE_EDIT, FAKE_VIDEO:
            for p in lora_parameters(m.unet, a):
                p.add_(torch.randn_like(p) * 0.5)
    with torch.no_grad():
        after = {k: f() for k, f in calls.items()}
    for k in calls:
        same = torch.equal(before[k], after[k])
        assert same != k.startswith("fake"), f"{k}: {'unchanged' if same else 'changed'} by the fake LoRAs"


@pytest.mark.parametrize("override,message", [
    ("fdd.fake_updates=0", "fdd.score=dmd needs fdd.fake_updates >= 1"),
    ("fdd.fake_lr=0", "fdd.score=dmd needs fdd.fake_updates >= 1, fdd.fake_lr > 0"),
    ("run.eval_every=5", "run.eval_every=5 asks for validation, but run.validation names no scorer"),
    ("run.validation=nope", "run.validation='nope' must look like module:attr"),
    ("run.validation=eve.nothing_here:scorer", "run.validation='eve.nothing_here:scorer' cannot be loaded"),
])
def test_bad_dmd_and_validation_values_are_one_line_errors(override, message):
    cfg = load_config(None, base_overrides() + ["fdd.score=dmd", override])
    with pytest.raises(EveError) as e:
        validate(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)
