"""The composed model against plain diffusers modules, and the properties of each role."""

import pytest
import torch
from diffusers import ControlNetModel, MotionAdapter, UNet2DConditionModel, UNetMotionModel

from eve.diffusion.timesteps import ddim_timesteps
from eve.diffusion.sampling import sample
from eve.models import ROLE_SWITCHES, Cond, EveModel, Known, Role, Switches
from eve.models.known import first_frame
from eve.models.lora import lora_parameters

B, F, C, H, W = 2, 4, 3, 8, 12
OFF = Switches(edit=False, motion=True, lora=False, known=False)


def inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    xt = torch.randn(B, F, C, H, W, generator=g)
    t = torch.tensor([999, 420])
    caption = model.encode_text(["a red square", "a blue circle on green"])
    instruction = model.encode_text(["make it red", "put it on green"])
    source = torch.rand(B, F, 3, H, W, generator=g) * 2 - 1
    known = first_frame(torch.randn(B, C, H, W, generator=g), F, torch.randn(B, F, C, H, W, generator=g))
    return xt, t, Cond(caption, instruction, source, torch.tensor([0, 4]), known)


def raw_parts(tiny_dir):
    unet2d = UNet2DConditionModel.from_pretrained(tiny_dir / "sd", subfolder="unet")
    adapter = MotionAdapter.from_pretrained(tiny_dir / "motion_adapter")
    cn = ControlNetModel.from_pretrained(tiny_dir / "controlnet")
    return unet2d, adapter, cn


def test_controlnet_and_lora_off_equals_the_motion_unet(model, tiny_dir):
    unet2d, adapter, _ = raw_parts(tiny_dir)
    reference = UNetMotionModel.from_unet2d(unet2d, adapter).eval()
    model.add_lora(4, None, ["to_q", "to_k", "to_v", "to_out.0"])
    with torch.no_grad():
        for p in lora_parameters(model.unet):
            p.normal_()  # a LoRA that changes outputs, to show the switch really turns it off
        xt, t, cond = inputs(model)
        ours = model(xt, t, cond, switches=OFF)
        ref = reference(
            xt.permute(0, 2, 1, 3, 4), t, encoder_hidden_states=cond.caption.repeat_interleave(F, 0)
        ).sample.permute(0, 2, 1, 3, 4)
        with_lora = model(xt, t, cond, switches=Switches(edit=False, motion=True, lora=True, known=False))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert (with_lora - ref).abs().max() > 1e-3


def test_motion_bypassed_equals_the_2d_unet_per_frame(model, tiny_dir):
    unet2d, _, cn = raw_parts(tiny_dir)
    unet2d.eval(), cn.eval()
    xt, t, cond = inputs(model)
    x_bf, t_bf = xt.flatten(0, 1), t.repeat_interleave(F)
    cap_bf = cond.caption.repeat_interleave(F, 0)
    with torch.no_grad():
        no_edit = model(xt, t, cond, switches=Switches(edit=False, motion=False, lora=False, known=False))
        ref = unet2d(x_bf, t_bf, encoder_hidden_states=cap_bf).sample.unflatten(0, (B, F))
        torch.testing.assert_close(no_edit, ref, atol=1e-5, rtol=1e-5)
        # the edit teacher is exactly the 2D UNet plus the ControlNet on (input frame, instruction, task), per frame
        down, mid = cn(
            x_bf,
            t_bf,
            encoder_hidden_states=cond.instruction.repeat_interleave(F, 0),
            controlnet_cond=(cond.source.flatten(0, 1) + 1) / 2,
            class_labels=cond.task.repeat_interleave(F),
            return_dict=False,
        )
        ref_edit = unet2d(
            x_bf, t_bf, encoder_hidden_states=cap_bf, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample.unflatten(0, (B, F))
        teacher = model(xt, t, cond, Role.EDIT_TEACHER)
    torch.testing.assert_close(teacher, ref_edit, atol=1e-5, rtol=1e-5)
    assert (teacher - ref).abs().max() > 1e-3, "the edit adapter must change the output"
    assert (teacher - model(xt, t, cond, switches=OFF)).abs().max() > 1e-3, "motion off must differ from motion on"


def test_fresh_lora_equals_plug_and_play(model):
    xt, t, cond = inputs(model)
    with torch.no_grad():
        pnp = model(xt, t, cond, Role.PLUG_AND_PLAY)
        model.add_lora(4, None, ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out"])
        fresh = model(xt, t, cond, Role.STUDENT)
        torch.testing.assert_close(fresh, pnp, atol=0, rtol=0)
        for p in lora_parameters(model.unet):
            p.add_(0.1 * torch.randn_like(p))
        trained = model(xt, t, cond, Role.STUDENT)
        pnp_again = model(xt, t, cond, Role.PLUG_AND_PLAY)
    assert (trained - pnp).abs().max() > 1e-3
    torch.testing.assert_close(pnp_again, pnp, atol=0, rtol=0)


def test_lora_is_only_on_spatial_backbone_layers(model):
    model.add_lora(4, None, ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"])
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and n.startswith("unet.") for n in names)
    assert not any("motion_modules" in n for n in names)
    assert not any("lora_" in n for n, _ in model.controlnet.named_parameters())
    for n, p in model.named_parameters():
        if "lora_B" in n:
            assert torch.all(p == 0), "LoRA B starts at zero"


def test_edit_teacher_treats_frames_independently(model):
    xt, t, cond = inputs(model)
    perm = torch.tensor([2, 0, 3, 1])
    permuted = Cond(cond.caption, cond.instruction, cond.source[:, perm], cond.task)
    with torch.no_grad():
        out = model(xt, t, cond, Role.EDIT_TEACHER)
        out_p = model(xt[:, perm], t, permuted, Role.EDIT_TEACHER)
        single = model(xt[:, 1:2], t, cond.frames(slice(1, 2)), Role.EDIT_TEACHER)
    torch.testing.assert_close(out_p, out[:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single, out[:, 1:2], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("role", [Role.VIDEO_TEACHER, Role.PLUG_AND_PLAY, Role.STUDENT])
def test_video_roles_mix_frames(model, role):
    xt, t, cond = inputs(model)
    changed = xt.clone()
    changed[:, 3] += 1.0
    with torch.no_grad():
        a, b = model(xt, t, cond, role), model(changed, t, cond, role)
        ea, eb = model(xt, t, cond, Role.EDIT_TEACHER), model(changed, t, cond, Role.EDIT_TEACHER)
    assert (a[:, 1] - b[:, 1]).abs().max() > 1e-4, "changing frame 3 must reach frame 1 through motion modules"
    torch.testing.assert_close(ea[:, 1], eb[:, 1], atol=1e-6, rtol=0)


def test_roles_are_the_papers():
    assert ROLE_SWITCHES[Role.EDIT_TEACHER] == Switches(edit=True, motion=False, lora=False, known=False)
    assert ROLE_SWITCHES[Role.VIDEO_TEACHER] == Switches(edit=False, motion=True, lora=False, known=True)
    assert ROLE_SWITCHES[Role.PLUG_AND_PLAY] == Switches(edit=True, motion=True, lora=False, known=True, user=True)
    assert ROLE_SWITCHES[Role.STUDENT] == Switches(edit=True, motion=True, lora=True, known=True, user=True)
    assert ROLE_SWITCHES[Role.LORA_TEACHER] == Switches(edit=False, motion=False, lora=False, known=False, user=True)


def test_frozen_weights_exist_once(model):
    """Teachers are switches over one set of weights: no duplicated parameter tensors."""
    ptrs = [p.data_ptr() for p in model.parameters()]
    assert len(ptrs) == len(set(ptrs))
    assert not any(p.requires_grad for p in model.parameters())


def test_dtype_and_device_follow_the_weights(model):
    """EveModel reads them off the UNet's first parameter (diffusers' own properties walk every submodule per call):
    they must still be the backbone's, and follow a cast; a cast model still runs a role in its dtype."""
    assert (model.dtype, model.device) == (model.unet.dtype, model.unet.device) == (torch.float32, torch.device("cpu"))
    xt, t, cond = inputs(model)
    full = model(xt, t, cond, Role.PLUG_AND_PLAY)
    model.to(torch.bfloat16)
    assert model.dtype == model.unet.dtype == torch.bfloat16
    half = model(xt, t, cond, Role.PLUG_AND_PLAY)  # inputs cast to model.dtype inside, the output back to float32
    assert not torch.equal(half, full) and (half - full).norm() < 0.05 * full.norm()


def test_replace_keeps_known_frames_exactly(model):
    """With 'replace', a DDIM run's known frames come out exactly as given, and they steer the other frames."""
    xt, t, cond = inputs(model)
    x = torch.randn(B, F, C, H, W, generator=torch.Generator().manual_seed(3))
    steps = ddim_timesteps(4, 1000)
    with torch.no_grad():
        out = sample(model.denoiser(cond, Role.VIDEO_TEACHER), x, steps, model.schedule)
        other = Known(cond.known.latents + 1.0, cond.known.mask, cond.known.noise)
        out2 = sample(model.denoiser(Cond(cond.caption, known=other), Role.VIDEO_TEACHER), x, steps, model.schedule)
    torch.testing.assert_close(out[:, 0], cond.known.latents[:, 0], atol=1e-5, rtol=1e-5)
    assert (out[:, 1:] - out2[:, 1:]).abs().max() > 1e-3


def test_sparsectrl_mechanism_is_swappable(tiny_cfg):
    from dataclasses import replace

    m = EveModel.from_config(replace(tiny_cfg.model, first_frame="sparsectrl"))
    assert m.sparsectrl is not None
    xt, t, cond = inputs(m)
    other = Known(cond.known.latents + 1.0, cond.known.mask, cond.known.noise)
    with torch.no_grad():
        a = m(xt, t, cond, Role.VIDEO_TEACHER)
        b = m(xt, t, Cond(cond.caption, known=other), Role.VIDEO_TEACHER)
        c = m(xt, t, cond, switches=Switches(edit=False, motion=True, lora=False, known=False))
    assert (a - b).abs().max() > 1e-4, "the known frame must steer the clip"
    assert (a - c).abs().max() > 1e-4


def test_guidance_scale_one_is_a_single_forward(model):
    xt, t, cond = inputs(model)
    with torch.no_grad():
        plain = model.predict_x0(xt, t, cond, Role.EDIT_TEACHER)
        same = model.guided_x0(xt, t, cond, Role.EDIT_TEACHER, text_scale=1.0, image_scale=1.0)
        guided = model.guided_x0(xt, t, cond, Role.EDIT_TEACHER, text_scale=5.0, image_scale=1.5)
    torch.testing.assert_close(plain, same, atol=0, rtol=0)
    assert (guided - plain).abs().max() > 1e-3


@pytest.mark.parametrize("role,text_scale,image_scale", [(Role.EDIT_TEACHER, 5.0, 1.5), (Role.VIDEO_TEACHER, 4.0, 1.0),
                                                         (Role.PLUG_AND_PLAY, 3.0, 1.0), (Role.PLUG_AND_PLAY, 3.0, 2.0)])
def test_batched_guidance_is_the_branches_one_call_each(model, role, text_scale, image_scale):
    """model.batch_guidance runs guidance's branches as one batch (the edit adapter's residuals only where it is on):
    the same result as one call per branch, written out here from predict_x0 and the guidance formulas."""
    from dataclasses import replace

    from eve.diffusion.guidance import cfg, dual_cfg

    xt, t, cond = inputs(model)
    sw = ROLE_SWITCHES[role]
    null = model.encode_text([""], role).expand_as(cond.caption)
    no_text = replace(cond, caption=null, instruction=null)
    with torch.no_grad():
        full = model.predict_x0(xt, t, cond, role)
        if image_scale == 1.0:
            expected = cfg(model.predict_x0(xt, t, no_text, role), full, text_scale)
        else:
            uncond = model.predict_x0(xt, t, no_text, role, replace(sw, edit=False))
            expected = dual_cfg(uncond, model.predict_x0(xt, t, no_text, role), full, text_scale, image_scale)
        model.batch_guidance = True
        batched = model.guided_x0(xt, t, cond, role, text_scale=text_scale, image_scale=image_scale)
        model.batch_guidance = False
        separate = model.guided_x0(xt, t, cond, role, text_scale=text_scale, image_scale=image_scale)
    torch.testing.assert_close(separate, expected, atol=0, rtol=0)
    torch.testing.assert_close(batched, expected, atol=1e-5, rtol=1e-5)
    assert (batched - full).abs().max() > 1e-3, "guidance moved the prediction"
