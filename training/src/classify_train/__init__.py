"""Train the course's MNIST and IMDb models and export them into a Classify model repository.

Layout: ``data`` reads the data sets (no TensorFlow), ``recipes`` says how each model is built and
trained, ``training`` runs a recipe, ``export`` writes ``REPO/NAME/VERSION/``, ``cli`` is ``classify-train``.
"""

__version__ = "0.1.0"
