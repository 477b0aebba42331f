"""Architectures of the shapes world's frozen parts, each a real diffusers / transformers / timm class at a small
size, so they are saved and loaded exactly as SD-1.5, ControlNet, AnimateDiff, SparseCtrl and DINOv2 weights are.

Latent space like SD's: 32 px frames, an AutoencoderKL with downsampling 2 and 4 latent channels (16x16x4 latents).
Downsampling 2, not SD's 8: the world's patterns (period 4-7 px) must be spatial structure on the latent grid that
the UNet's 3x3 convolutions can draw. With downsampling 4 (8x8x8 latents, the first committed set) a period was
at most two latent pixels, a pattern lived in channel codes, and the backbone drew worm-like noise instead of
stripes, checks or dots after 3000 steps (docs/proving-ground.md).
"""

from __future__ import annotations

import torch

from eve.tasks import TASKS
from eve.worlds.shapes import world as W

TEXT_DIM = 64
MAX_TOKENS = 24
LATENT_CHANNELS = 4
VAE_BLOCKS = (32, 64)  # downsampling 2
BLOCKS = (32, 64, 128)  # 16x16, 8x8, 4x4 latents
HINT_CHANNELS = tuple(16 * 2**i for i in range(len(VAE_BLOCKS)))  # the ControlNet's hint encoder downsamples as the VAE
DOWN = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
UP = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
LATENT_SIZE = W.SIZE // 2 ** (len(VAE_BLOCKS) - 1)
VIT_ARGS = dict(img_size=W.SIZE, patch_size=4, embed_dim=96, depth=4, num_heads=4, num_classes=0)


def word_tokenizer(words: list[str]):
    """A CLIPTokenizer whose BPE merges spell every world word as one token (bytes otherwise)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for s in symbols + [s + "</w>" for s in symbols]:
        vocab[s] = len(vocab)
    merges = []
    for w in words:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        cur = parts[0]
        for nxt in parts[1:]:
            merges.append((cur, nxt))
            cur = cur + nxt
            vocab.setdefault(cur, len(vocab))
    merges = list(dict.fromkeys(merges))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)


def text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=TEXT_DIM, bos_token_id=0,
        eos_token_id=1, pad_token_id=1))


def autoencoder():
    from diffusers import AutoencoderKL

    n = len(VAE_BLOCKS)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=VAE_BLOCKS, layers_per_block=1,
        latent_channels=LATENT_CHANNELS, norm_num_groups=16, sample_size=W.SIZE)


def unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, block_out_channels=BLOCKS,
        layers_per_block=1, norm_num_groups=32, cross_attention_dim=TEXT_DIM, attention_head_dim=8,
        down_block_types=DOWN, up_block_types=UP)


def controlnet(backbone):
    """ControlNet initialised from copies of the backbone's down and middle blocks (paper §3.1), with task
    embeddings (Emu Edit's task label). Its hint encoder maps 32 px frames to the latent grid."""
    from diffusers import ControlNetModel

    cn = ControlNetModel.from_unet(backbone, conditioning_embedding_out_channels=HINT_CHANNELS)
    cn.register_to_config(num_class_embeds=len(TASKS))
    cn.class_embedding = torch.nn.Embedding(len(TASKS), cn.time_embedding.linear_2.out_features)
    torch.nn.init.zeros_(cn.class_embedding.weight)  # the task label starts as no change
    return cn


def motion_adapter():
    from diffusers import MotionAdapter

    return MotionAdapter(block_out_channels=BLOCKS, motion_layers_per_block=1, motion_norm_num_groups=32,
                         motion_num_attention_heads=8, motion_max_seq_length=32, use_motion_mid_block=True)


def first_frame_net(backbone):
    """The video adapter's trained first-frame input: a SparseControlNetModel (SparseCtrl-RGB's layout, latent
    variant) that sees the known latents concatenated with a frame mask, initialised from the backbone."""
    from diffusers import SparseControlNetModel

    motion_blocks = tuple(b.replace("2D", "Motion") for b in DOWN)
    net = SparseControlNetModel(
        in_channels=LATENT_CHANNELS, conditioning_channels=LATENT_CHANNELS, down_block_types=motion_blocks,
        block_out_channels=BLOCKS, layers_per_block=1, norm_num_groups=32, cross_attention_dim=TEXT_DIM,
        attention_head_dim=8, motion_num_attention_heads=8, motion_max_seq_length=32,
        concat_conditioning_mask=True, use_simplified_condition_embedding=True)
    # diffusers' from_unet cannot take a tuple-typed config here; copying the shared 2D weights by name is the same
    net.load_state_dict(backbone.state_dict(), strict=False)
    return net


def feature_vit():
    import timm

    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, **VIT_ARGS)
