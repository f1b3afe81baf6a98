"""A depth network for the tests: a tiny random Depth Anything saved as the hub saves one."""

import torch


def save_tiny_depth_anything(folder, kind="relative", seed=0):
    """A tiny random Depth Anything (Dinov2 backbone, patch 14) and its image processor, saved in the hub layout."""
    from transformers import AutoModelForDepthEstimation, DepthAnythingConfig, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, out_features=["stage1", "stage2"], reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, patch_size=14, neck_hidden_sizes=[8, 16],
        reassemble_factors=[2, 1], fusion_hidden_size=8, head_hidden_size=8, depth_estimation_type=kind,
    )  # fmt: skip
    model = AutoModelForDepthEstimation.from_config(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # the default initialisation is so small that the output is nearly constant; make it vary
        for parameter in model.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(folder)
    processor = DPTImageProcessor(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )  # fmt: skip
    processor.save_pretrained(folder)
    return folder
