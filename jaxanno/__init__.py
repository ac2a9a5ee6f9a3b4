"""jaxanno: efficient online image-classification annotation, simulated in JAX."""
