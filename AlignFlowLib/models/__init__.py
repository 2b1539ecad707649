"""Networks: the velocity UNet (image and mask generators) and low-rank adapters."""

from .velocity import VelocityUNet, build_velocity_unet, drop_masks, guided_velocity

__all__ = ["VelocityUNet", "build_velocity_unet", "drop_masks", "guided_velocity"]
