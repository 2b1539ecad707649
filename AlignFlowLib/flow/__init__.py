"""Flow matching: the rectified path, the ODE samplers and the EMA of weights."""

from .ema import make_ema, update_ema
from .path import PathSample, flow_matching_loss, interpolate, sample_time
from .sampler import sample_ode

__all__ = ["PathSample", "interpolate", "sample_time", "flow_matching_loss", "sample_ode", "make_ema", "update_ema"]
