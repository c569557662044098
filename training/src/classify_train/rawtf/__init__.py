"""The course's MNIST models written a second time in TensorFlow's own low-level API: ``tf.Variable``,
``tf.matmul``, ``tf.nn`` ops and a ``tf.GradientTape`` loop inside ``tf.function``, no Keras. They export
the same serving signature and model.json as the Keras models, so everything downstream serves them
unchanged."""
