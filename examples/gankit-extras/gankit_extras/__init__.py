"""gankit-extras: an example third-party package of gankit plugins.

It reaches gankit only through the entry points in its ``pyproject.toml`` and the public ``gankit.interfaces``:

- losses ``hinge``, ``wgan-gp`` and ``lsgan`` (``gankit_extras.losses``);
- a generator/discriminator pair ``resnet``, a small ResNet GAN with spectral normalisation in D
  (``gankit_extras.resnet``).

Nothing is imported here, so listing plugins with ``gankit plugins`` stays cheap.
"""

__version__ = "0.1.0"
