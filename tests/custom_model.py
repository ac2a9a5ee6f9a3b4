"""A user-defined learner module for the plug-in test: any flax module taking num_classes."""

import flax.linen as nn
import jax


class TwoLayerGelu(nn.Module):
    num_classes: int
    width: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes)(nn.gelu(nn.Dense(self.width)(x)))
