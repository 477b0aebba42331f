"""FDD training (paper §3): the generator and discriminator steps, teachers' real samples, checkpoints."""
