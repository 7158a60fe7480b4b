"""Time-to-quality: our latent-diffusion recipe against an off-the-shelf diffusers recipe, each trained for the
same wall-clock minutes on the same threads and scored the same way."""
