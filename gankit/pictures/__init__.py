"""What people look at: reproducible samples and image grids, latent walks, the GIF of a run's grids and its
loss plot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gankit import lazy_exports

if TYPE_CHECKING:
    from gankit.pictures._figures import loss_figure as loss_figure
    from gankit.pictures._figures import plot_losses as plot_losses
    from gankit.pictures._figures import save_progress_gif as save_progress_gif
    from gankit.pictures._sampling import generate as generate
    from gankit.pictures._sampling import sample_images as sample_images
    from gankit.pictures._sampling import save_image_grid as save_image_grid
    from gankit.pictures._walks import latent_walk as latent_walk
    from gankit.pictures._walks import save_walk as save_walk
    from gankit.pictures._walks import slerp as slerp
    from gankit.pictures._walks import walk_images as walk_images

__all__, __getattr__, __dir__ = lazy_exports(__name__)
