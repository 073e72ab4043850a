"""Generation: cached incremental decoding with online patching, and full recomputation."""

from bltx.infer.generate import generate
from bltx.infer.sampling import SamplingConfig

__all__ = ["SamplingConfig", "generate"]
