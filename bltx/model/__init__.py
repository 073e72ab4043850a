"""Model layers and BLT components (byte embedder, local encoder, latent, local decoder,
entropy model) and the BLT assembly. Importing `bltx.model.blt` registers them all."""
