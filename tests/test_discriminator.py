import torch

from eve.models.discriminator import DinoFeatures, EditDiscriminator, VideoDiscriminator, default_hooks, trainable_state_dict
from eve.models.loading import load_timm


def build(tiny_dir):
    features = DinoFeatures(load_timm(str(tiny_dir / "dino")), [1, 3])
    return features, EditDiscriminator(features, 32, 16, 16, 2), VideoDiscriminator(features, 32, 16, 16, 2, 8)


def test_default_hooks():
    assert default_hooks(12) == [2, 5, 8, 11]
    assert default_hooks(4) == [0, 1, 2, 3]


def test_frozen_dino_gets_no_gradient_heads_and_images_do(tiny_dir):
    features, d_e, d_v = build(tiny_dir)
    out = (torch.rand(6, 3, 16, 24) * 2 - 1).requires_grad_()
    video = (torch.rand(2, 3, 3, 16, 24) * 2 - 1).requires_grad_()
    loss = d_e(out, torch.rand(6, 3, 16, 24), torch.randn(6, 32)).mean() + d_v(video, torch.randn(2, 32)).mean()
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in features.parameters())
    heads = [p for n, p in list(d_e.named_parameters()) + list(d_v.named_parameters()) if not n.startswith("features.")]
    assert heads and all(p.grad is not None for p in heads)
    assert out.grad.abs().sum() > 0 and video.grad.abs().sum() > 0, "the generator needs gradients through DINO"
    assert not any(k.startswith("features.") for k in trainable_state_dict(d_e))
    d_e.train()
    assert not features.vit.training, "the feature network stays in eval mode"


def test_edit_discriminator_sees_its_conditions(tiny_dir):
    _, d_e, _ = build(tiny_dir)
    g = torch.Generator().manual_seed(0)
    out, src, text = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g), torch.randn(2, 32, generator=g)
    with torch.no_grad():
        base = d_e(out, src, text)
        assert (d_e(out, src.flip(0), text) - base).abs().max() > 1e-5, "input frame conditions D_e"
        assert (d_e(out, src, text.flip(0)) - base).abs().max() > 1e-5, "instruction conditions D_e"


def test_video_discriminator_mixes_frames_per_token(tiny_dir):
    _, _, d_v = build(tiny_dir)
    v = torch.rand(1, 4, 3, 16, 16)
    text = torch.randn(1, 32)
    with torch.no_grad():
        torch.nn.init.normal_(d_v.heads[0].frame_pos)  # learned frame positions start at zero
        a = d_v(v, text)
        changed = v.clone()
        changed[:, 3] = torch.rand(3, 16, 16)
        b = d_v(changed, text)
        per_frame = lambda x: x.view(1, 4, -1)  # noqa: E731  (logits are ordered frame-major within each head)
        L0 = a.shape[1] // 2 // 4
        assert (a[:, : 4 * L0].view(1, 4, L0)[:, 0] - b[:, : 4 * L0].view(1, 4, L0)[:, 0]).abs().max() > 1e-6
        assert per_frame(a).shape[1] == 4
