"""Keras 3 model definitions. These modules import Keras at the top: import them only where training."""
