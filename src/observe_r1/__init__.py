"""observe-r1: train multimodal LLMs to observe, think and answer with the Observe-R1 RL recipe on TRL.

Importing the package registers the image-only processors of every model family with ``AutoProcessor``.
"""

from observe_r1.models import ObserveR1VLProcessor, build_tiny_model, load_policy

__version__ = "0.1.0"
__all__ = ["ObserveR1VLProcessor", "build_tiny_model", "load_policy", "__version__"]
