"""Template data generation: slot pools, phrasings and the seeded generator.

    from toolforge.templates import generate
    examples = generate(n=5000, seed=0)   # identical output for the same seed
"""
from .generator import DEFAULT_N, HARD_TAGS, generate, load_templates
from .noise import normalize
from .slots import GENERATOR_RULES, UNITS, load_pools

__all__ = ["DEFAULT_N", "GENERATOR_RULES", "HARD_TAGS", "UNITS", "generate", "load_pools", "load_templates",
           "normalize"]
