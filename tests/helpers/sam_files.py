"""Writers for tiny, randomly initialised Segment Anything video checkpoints.

The SAM 2 / SAM 3 mask loaders read a model folder in the Hugging Face hub layout: config.json,
model.safetensors, processor_config.json (which holds the image and video processor settings) and, for
SAM 3, the CLIP tokenizer files. Tests cannot download the real checkpoints, so these helpers build the
same transformers classes with every size cut down (56-64 px inputs, one or two blocks per part, 8-32
wide backbones, and 128-wide heads, the narrowest the tracker accepts) and `save_pretrained` both the
model and its processor. `AutoProcessor.from_pretrained(folder)` and `AutoModel.from_pretrained(folder)`
then load them offline, and a 6-frame clip runs in a fraction of a second on a CPU. The weights are
random, so the masks mean nothing; only shapes and plumbing do.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import (
    CLIPTokenizer,
    Sam2HieraDetConfig,
    Sam2ImageProcessor,
    Sam2VideoConfig,
    Sam2VideoMaskDecoderConfig,
    Sam2VideoModel,
    Sam2VideoProcessor,
    Sam2VideoPromptEncoderConfig,
    Sam2VideoVideoProcessor,
    Sam2VisionConfig,
    Sam3Config,
    Sam3ImageProcessor,
    Sam3TrackerVideoConfig,
    Sam3VideoConfig,
    Sam3VideoModel,
    Sam3VideoProcessor,
    Sam3VisionConfig,
    Sam3ViTConfig,
)

SAM2_IMAGE_SIZE = 64  # Hiera strides 4, 8, 16, 32: 64 px leaves a 2x2 top stage
SAM3_IMAGE_SIZE = 56  # ViT patch 14: a 4x4 token grid, FPN levels 16, 8, 4 (and 2)
SAM3_PATCH_SIZE = 14

# Tracker width. The memory attention reads 64-channel memories (kv_in_dim=64 is fixed in transformers), so
# memory_encoder_output_channels stays at its default 64, and each object pointer (as wide as the FPN, prompt
# encoder, mask decoder and memory attention) is only stacked with the memories after being split into 64-wide
# tokens, which needs a width that is a multiple of 64 and larger than it: 128.
WIDTH = 128
_TRACKER_SIZES = dict(
    memory_attention_hidden_size=WIDTH,
    memory_attention_num_layers=1,
    memory_attention_feed_forward_hidden_size=64,
    memory_attention_dropout=0.0,
    memory_attention_rope_dropout=0.0,
    memory_encoder_hidden_size=WIDTH,
    mask_downsampler_embed_dim=WIDTH,
    memory_fuser_num_layers=1,
    memory_fuser_embed_dim=WIDTH,
    memory_fuser_intermediate_dim=64,
)
_MASK_DECODER = dict(hidden_size=WIDTH, mlp_dim=64, num_hidden_layers=1, num_attention_heads=2, iou_head_hidden_dim=32)


def _sizes(size: int) -> dict:
    return {"height": size, "width": size}


def _always_present(mask_decoder: torch.nn.Module) -> None:
    """Bias the tracker's object-score head so every object counts as visible.

    With random weights the score's sign is a coin flip per seed, and a non-positive score makes the
    tracker replace the whole mask with -1024 (an empty mask on every frame).
    """
    with torch.no_grad():
        mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)


def write_tiny_sam2_video(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Sam2VideoModel and its Sam2VideoProcessor to `folder`; return the folder."""
    folder = Path(folder)
    size = SAM2_IMAGE_SIZE
    backbone = Sam2HieraDetConfig(
        hidden_size=8,
        image_size=[size, size],
        blocks_per_stage=[1, 1, 1, 1],
        embed_dim_per_stage=[8, 16, 32, 64],  # must double per stage (the pooled skip path needs a projection)
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[4, 4, 4, 2],
        window_positional_embedding_background_size=[4, 4],
        global_attention_blocks=[],  # a global block may not open a pooling stage; 4x4 windows cover the top stages
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[64, 32, 16, 8],
        backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
        fpn_hidden_size=WIDTH,
    )
    config = Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(
            hidden_size=WIDTH, image_size=size, patch_size=16, mask_input_channels=8
        ),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(**_MASK_DECODER),
        image_size=size,
        memory_attention_rope_feat_sizes=[size // 16, size // 16],
        **_TRACKER_SIZES,
    )
    torch.manual_seed(seed)
    model = Sam2VideoModel(config).eval()
    _always_present(model.mask_decoder)
    model.save_pretrained(folder)
    processor = Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size=_sizes(size), mask_size=_sizes(size // 4)),
        video_processor=Sam2VideoVideoProcessor(size=_sizes(size)),
    )
    processor.save_pretrained(folder)
    return folder


def _write_clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """Write vocab.json + merges.txt of a byte-level BPE (256 bytes, a few merges) and load it as CLIP's tokenizer."""
    specials = ["<|startoftext|>", "<|endoftext|>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "c"), ("c", "e"), ("e", "r</w>")]
    tokens = specials + alphabet + [c + "</w>" for c in alphabet] + [a + b for a, b in merges]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder)


def write_tiny_sam3_video(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Sam3VideoModel and its Sam3VideoProcessor (with a tiny CLIP tokenizer); return the folder.

    The random detector's scores sit near 0.25 (sigmoid(~0) squared), so the thresholds are opened up to
    make a text prompt reliably give tracked objects: `score_threshold_detection=0.0` keeps every one of
    the 4 detector queries and `new_det_thresh=0.0` starts a track for each one no track already covers;
    `hotstart_delay=0` yields each frame as soon as it is processed (no 15-frame buffer) and never drops
    a young track as unmatched or duplicate; `max_num_objects=4` caps the tracks; `det_nms_thresh=0.0`
    and `fill_hole_area=0` skip the NMS and hole filling that need the hub's cv-utils kernel, so the
    output does not depend on whether that kernel is cached; `recondition_every_nth_frame=0` skips
    reconditioning. Together with `_always_present`, every frame of a random clip gets objects.
    """
    folder = Path(folder)
    size, patch = SAM3_IMAGE_SIZE, SAM3_PATCH_SIZE
    grid = size // patch
    tokenizer = _write_clip_tokenizer(folder)

    def vision() -> Sam3VisionConfig:  # one each for the detector and the tracker, which share the weights
        backbone = Sam3ViTConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=size,
            patch_size=patch,
            window_size=2,
            global_attn_indexes=[1],
            pretrain_image_size=size,
        )
        sizes = [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2]
        return Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=WIDTH, backbone_feature_sizes=sizes)

    blocks = dict(hidden_size=WIDTH, num_layers=1, num_attention_heads=2, intermediate_size=64, dropout=0.0)
    detector = Sam3Config(
        vision_config=vision(),
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,  # the processor pads prompts to 32 tokens
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        geometry_encoder_config=blocks,
        detr_encoder_config=blocks,
        detr_decoder_config=dict(blocks, num_queries=4),
        mask_decoder_config=dict(hidden_size=WIDTH, num_attention_heads=2),
    )
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision(),
        prompt_encoder_config=dict(hidden_size=WIDTH, image_size=size, patch_size=patch, mask_input_channels=8),
        mask_decoder_config=_MASK_DECODER,
        **_TRACKER_SIZES,
    )
    tracker.image_size = size  # also sets the feature and rope sizes from the patch grid
    config = Sam3VideoConfig(
        detector_config=detector,
        tracker_config=tracker,
        low_res_mask_size=4 * grid,
        score_threshold_detection=0.0,
        new_det_thresh=0.0,
        hotstart_delay=0,
        max_num_objects=4,
        det_nms_thresh=0.0,
        fill_hole_area=0,
        recondition_every_nth_frame=0,
    )
    torch.manual_seed(seed)
    model = Sam3VideoModel(config).eval()
    _always_present(model.tracker_model.mask_decoder)
    model.save_pretrained(folder)
    processor = Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(size=_sizes(size), mask_size=_sizes(4 * grid)),
        video_processor=Sam2VideoVideoProcessor(size=_sizes(size)),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(folder)
    return folder
