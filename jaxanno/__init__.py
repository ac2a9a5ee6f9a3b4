"""jaxanno: efficient online image-classification annotation, simulated in JAX."""

from jaxanno import compile_cache

compile_cache.configure()  # before anything compiles; where and why: jaxanno/compile_cache.py
